"""The ``meshward`` sub-command groups; each module parses and wires, nothing more."""

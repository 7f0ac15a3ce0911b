"""Where policy bundles come from: a directory or a Git repository, behind one protocol.

The gate (:mod:`authz.sources.gate`) turns what a source offers into the active
policy set, only after it parses, validates and passes its own tests.
"""

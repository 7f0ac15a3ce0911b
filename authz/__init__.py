"""The policy decision point: authenticate a caller, authorize it with Cedar."""

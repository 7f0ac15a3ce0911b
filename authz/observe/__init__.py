"""Observation of decisions and sources: the decision log, metrics, tracing, recent decisions."""

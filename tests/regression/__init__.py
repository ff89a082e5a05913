"""Regression of the quick run's CSV outputs (see docs/regression.md)."""

"""Numerical analysis: units, structure summaries, metrics."""

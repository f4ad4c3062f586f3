"""Held-out evaluation: protocols, baselines and scoring that every result is reported with."""

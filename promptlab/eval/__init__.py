"""Evaluation: suites, scorers, statistics and gates."""

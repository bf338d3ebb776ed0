"""Evaluation: suites and their builders, predictions, scoring, tables, compare, metrics."""

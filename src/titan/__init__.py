"""Titan: run DAGs of Python jobs and agent loops, and record what every agent did."""

__version__ = "0.1.0"

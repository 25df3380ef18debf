"""The trivial job of bench/side_by_side.py: every system runs this same work."""

x = 1

"""Titan's version: a leaf, so the SDK's and the worker's modules can name it without
importing the ``titan`` package's public façade (which imports them)."""

__version__ = "0.1.0"

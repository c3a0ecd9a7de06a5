"""Kenes: civic surveys and public-consultation monitoring."""

__version__ = "0.1.0"

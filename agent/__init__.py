"""Shoal: a clustered Prometheus scrape agent configured with the Alloy language."""

__version__ = "0.1.0"

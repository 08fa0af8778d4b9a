"""A self-hosted image edge node: on-demand image transformation in front of your own storage."""

__version__ = "0.1.0"

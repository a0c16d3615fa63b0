"""wattwatch: real-time electricity monitoring for equipment."""

__version__ = "0.1.0"

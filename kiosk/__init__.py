"""Collector kiosk: a field terminal for loan and leasing collections."""

__version__ = "0.1.0"

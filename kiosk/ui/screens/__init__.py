"""The kiosk's screens, one module per task."""

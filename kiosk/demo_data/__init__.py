"""The demo's data: fictional customers around Bandung and a drive past them.

Both files are made by ``python -m kiosk.demo_data`` with a fixed seed, and
shipped, so every demo shows the same round. Dates in the assignment document
are shifted to the day the demo runs.
"""

"""The HQ service: one feed from every device, checked, stored and answered.

``store`` is the database (SQLite or PostgreSQL), ``ingest`` the MQTT worker
behind ``kiosk hq serve``, ``chain`` the journal check, ``commands`` device keys
and signed commands, ``views`` what ``kiosk hq devices``, ``events`` and
``verify-receipt`` answer.
"""

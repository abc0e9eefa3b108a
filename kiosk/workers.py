"""Which workers the service runs, chosen by the configuration."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiosk.service import Service, Worker

log = logging.getLogger(__name__)


def build_workers(service: Service) -> list[Worker]:
    workers: list[Worker] = []
    return workers

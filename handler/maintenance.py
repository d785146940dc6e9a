"""Background upkeep: the orphan-container reaper and the store's expiry sweep."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from core.errors import CodeInterpreterError

if TYPE_CHECKING:
    from handler.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one pass did: containers reaped, files expired, and what could not run."""

    reaped: int = 0
    expired: int = 0
    problems: list[str] = field(default_factory=list)


class Maintenance:
    """Runs the reaper at start-up and every ``RCE_REAPER_INTERVAL_S``; sweeps expired files."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rce-maintenance", daemon=True)

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop it and wait briefly."""
        self._stop.set()
        self._thread.join(timeout=5)

    def run_once(self) -> Sweep:
        """One pass: reap orphans, expire old files. Failures are logged and reported,
        never raised."""
        services = self._services
        reaped = expired = 0
        problems = []
        try:
            reaped = services.sandbox.reap()
            if reaped:
                log.info("reaped orphan sandbox containers", extra={"count": reaped})
        except CodeInterpreterError as exc:
            log.warning("reaper could not run: %s", exc.message)
            problems.append(f"reaper: {exc.message}")
        try:
            ttl = timedelta(hours=services.settings.session_ttl_hours)
            expired = services.store.expire(datetime.now(UTC) - ttl)
            if expired:
                log.info("expired session files", extra={"count": expired})
        except CodeInterpreterError as exc:
            log.warning("expiry sweep could not run: %s", exc.message)
            problems.append(f"expiry: {exc.message}")
        return Sweep(reaped, expired, problems)

    def _loop(self) -> None:
        while True:
            self.run_once()
            if self._stop.wait(self._services.settings.reaper_interval_s):
                return

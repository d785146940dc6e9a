"""The service's logging follows RCE_LOG_LEVEL, uvicorn's loggers included."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator

import pytest
from uvicorn.config import LOGGING_CONFIG

from handler.logs import configure_logging

UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = {name: logging.getLogger(name) for name in ("", *UVICORN)}
    state = {name: (lg.level, list(lg.handlers), lg.propagate) for name, lg in saved.items()}
    yield
    for name, lg in saved.items():
        level, handlers, propagate = state[name]
        lg.setLevel(level)
        lg.handlers, lg.propagate = handlers, propagate


@pytest.mark.parametrize(("level", "access_lines"), [("WARNING", False), ("INFO", True)])
def test_uvicorn_loggers_follow_the_configured_level(level: str, access_lines: bool) -> None:
    # What `uvicorn.run` does before it imports the app: its loggers at INFO.
    logging.config.dictConfig(LOGGING_CONFIG)
    assert logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO)
    configure_logging(level)
    for name in UVICORN:
        logger = logging.getLogger(name)
        assert logger.isEnabledFor(logging.INFO) is access_lines
        assert logger.isEnabledFor(logging.WARNING)
        assert logger.propagate and not logger.handlers

"""Process lifecycle shared by every long-running service: stop flag and logging."""

from __future__ import annotations

import logging
import signal
import sys
from datetime import datetime
from typing import Any

import pythonjsonlogger.json

from common.config import Settings


class StopFlag:
    """Set by SIGTERM or SIGINT; loops check it between units of work and finish cleanly."""

    def __init__(self) -> None:
        self._set = False

    def __bool__(self) -> bool:
        return self._set

    def set(self, *_: object) -> None:
        self._set = True

    @classmethod
    def install(cls) -> StopFlag:
        flag = cls()
        signal.signal(signal.SIGTERM, flag.set)
        signal.signal(signal.SIGINT, flag.set)
        return flag


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """One JSON object per line: time, level, stage, pid, message, any `extra` fields, and
    `error` with the traceback. python-json-logger does the work; this only fixes the field
    names every process (gunicorn's own lines included) shares."""

    def __init__(self, stage: str) -> None:
        super().__init__(
            "{levelname}{process}{message}",
            style="{",
            rename_fields={"levelname": "level", "process": "pid", "exc_info": "error"},
            static_fields={"stage": stage},
            timestamp="time",
            json_default=_json_default,
            json_ensure_ascii=False,
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data["level"] = str(log_data.get("level", "")).lower()
        return log_data


def _json_default(value: object) -> str:
    # ISO 8601 for the timestamp (str() would put a space in it); anything else as text.
    return value.isoformat() if isinstance(value, datetime) else str(value)


def configure_logging(settings: Settings, stage: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(stage))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)

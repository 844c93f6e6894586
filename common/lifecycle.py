"""Process lifecycle shared by every long-running service: stop flag and logging."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time

from common.config import Settings

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, stage, pid, message, and any `extra` fields."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "stage": self.stage,
            "pid": os.getpid(),
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(settings: Settings, stage: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(stage))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)

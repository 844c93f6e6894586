"""Log lines: one JSON object per line, the same field names in every process."""

from __future__ import annotations

import json
import logging
import sys

from common.lifecycle import JsonFormatter


def _format(record: logging.LogRecord) -> dict:
    return json.loads(JsonFormatter("ledger").format(record))


def _record(message: str, *args: object, exc_info=None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("ledger", logging.WARNING, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_a_line_has_the_shared_fields_and_the_extras():
    line = _format(_record("re-sending %d articles", 2, article_ids=["a", "b"]))
    assert line["message"] == "re-sending 2 articles"
    assert line["level"] == "warning"
    assert line["stage"] == "ledger"
    assert isinstance(line["pid"], int)
    assert line["article_ids"] == ["a", "b"]
    assert line["time"].endswith("+00:00") and "T" in line["time"]


def test_an_exception_is_logged_as_error_text():
    try:
        raise ValueError("bad frame")
    except ValueError:
        line = _format(_record("dropped", exc_info=sys.exc_info()))
    assert "ValueError: bad frame" in line["error"]


def test_values_json_cannot_carry_become_text():
    line = _format(_record("odd", payload=object()))
    assert line["payload"].startswith("<object object")

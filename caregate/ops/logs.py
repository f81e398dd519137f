"""Log records with the request id, as JSON lines (production) or readable text.

settings.LOGGING (Django) and deploy/gunicorn.conf.py (gunicorn's access and error logs)
both use these classes, so one deployment writes one format to stdout.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from caregate.ops.requestid import current_request_id

JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}
# Django's request loggers attach the HttpRequest (and the socket) to the record: their
# repr is noise at best, and the request's headers must not end up in the log.
_NOT_LOGGED = (*RESERVED_ATTRS, "request", "server_time")
# Paths that carry a one-time secret: the emailed registration link, a call's token.
_SECRET_PATH = re.compile(r"^/(registration-link|twilio/voice)/[^/]+")


class RequestIdFilter(logging.Filter):
    """Put the current request id on every record (a filter, so no call site changes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger's formatter with Caregate's field names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", RENAMED)
        kwargs.setdefault("reserved_attrs", _NOT_LOGGED)
        super().__init__(args[0] if args else JSON_FIELDS, *args[1:], **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # ISO 8601 in UTC: every process the same (Django sets the local zone in workers).
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def redact_path(path: str) -> str:
    """The path with a link or call token replaced, fit for an access log."""
    return _SECRET_PATH.sub(lambda match: f"/{match.group(1)}/<token>", path or "")


class AccessJsonFormatter(JsonFormatter):
    """gunicorn's access log line as JSON fields (gunicorn passes its atoms as the args).

    The query string is left out: nothing Caregate serves needs it in a log.
    """

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        atoms = record.args if isinstance(record.args, dict) else {}
        log_data.pop("message", None)
        log_data.update(
            {
                "remote_addr": atoms.get("h"),
                "method": atoms.get("m"),
                "path": redact_path(str(atoms.get("U") or "")),
                "status": _as_int(atoms.get("s")),
                "bytes": _as_int(atoms.get("B")),
                "duration_ms": round((_as_int(atoms.get("D")) or 0) / 1000, 1),
                "request_id": atoms.get("{x-request-id}o") or "-",
                "user_agent": atoms.get("a"),
            }
        )


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def logging_config(*, json_lines: bool, level: str) -> dict[str, Any]:
    """settings.LOGGING: one stdout handler with the request id, JSON or text."""
    formatter = (
        {"()": "caregate.ops.logs.JsonFormatter"} if json_lines else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "caregate.ops.logs.RequestIdFilter"}},
        "formatters": {"caregate": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": ["request_id"],
                "formatter": "caregate",
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }

"""Log lines of both roles: secrets scrubbed from every line, plain text or one JSON object a line.

``PAR_LOG_FORMAT=json`` makes every line (Django's, the project's, gunicorn's error and access
logs) a JSON object with an ISO 8601 UTC ``time``; the default is one plain line, with the same
time first, and no control character of a message (newline, CR, ESC, BEL) reaches it raw: each
is escaped as JSON escapes it, so no value a caller sent can forge a line or drive a terminal; a
traceback's lines follow, indented. Whatever the format, an API key or the node secret never reaches a log: the
``ScrubSecrets`` filter sits on every handler (gunicorn's through ``parsite.gunicorn_logging``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

FORMATS = ("plain", "json")
REDACTED = "[redacted]"

# api_key=VALUE in a query string (the seed's clients put the key there), raw or percent-encoded.
_QUERY_KEY = re.compile(r"(?i)(api[-_]?key)(=|%3D)[^&\s'\"<>\\]*")
# Header NAME: VALUE as written on the wire, in a dict's repr or in a WSGI environ.
_HEADER = re.compile(
    r"(?i)((?:http_)?(?:x[-_]api[-_]key|authorization|x[-_]par[-_]node[-_]secret|cookie))"
    r"(['\"]?\s*[:=]\s*['\"]?)([^'\"\r\n]*)"
)
# A key of ours wherever else it turns up (par_ and 40 to 64 characters; shown prefixes are shorter).
_PAR_KEY = re.compile(r"par_[A-Za-z0-9_\-]{16,}")


def scrub(text: str) -> str:
    """``text`` without API keys, Authorization, Cookie or node-secret values."""
    if not text:
        return text
    text = _QUERY_KEY.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}" if m[3] else m[0], text)
    return _PAR_KEY.sub("par_" + REDACTED, text)


class ScrubSecrets(logging.Filter):
    """Rewrites a record's message, traceback and stack so that they carry no secret."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


class OneLineDisallowedHost(logging.Filter):
    """Django's DisallowedHost report as one line naming the caller, not a traceback per request."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        meta = getattr(request, "META", {})
        peer = str(meta.get("REMOTE_ADDR", "?"))[:64]
        record.msg = f"{record.getMessage()[:300]} (from {peer})"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.client = peer
        return True


def iso_time(created: float) -> str:
    """``2026-12-01T07:40:00.123Z``: a record's time, UTC, to the millisecond."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# C0 and C1 controls, DEL, and the two Unicode line breaks: what a terminal or a log reader acts on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """``text`` with each control character written as JSON writes it (``\\n``, ``\\u001b``)."""
    return _CONTROL.sub(lambda m: _SHORT_ESCAPES.get(m[0]) or f"\\u{ord(m[0]):04x}", text)


class PlainFormatter(logging.Formatter):
    """``<ISO time> <LEVEL> <logger>: <message>``, control characters escaped; a traceback indented below."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_time(record.created)

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.getMessage())
        record.asctime = self.formatTime(record)
        line = escape_controls(self.formatMessage(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for block in (record.exc_text, record.stack_info):
            if block:
                # Every line of it indented: none can pass for a line of its own, whatever it quotes.
                line += "".join(f"\n  {escape_controls(part)}" for part in block.split("\n"))
        return line


# Attributes a record may carry beyond the standard ones that belong in a JSON line.
_FIELDS = ("client", "status_code", "access", "audit")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, process, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, dict):
                line.update(value)
            elif value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return scrub(json.dumps(line, default=str, ensure_ascii=False))


def log_format() -> str:
    """PAR_LOG_FORMAT: ``plain`` (default) or ``json``; anything else stops the start."""
    value = os.environ.get("PAR_LOG_FORMAT", "").strip().lower() or "plain"
    if value not in FORMATS:
        # Read by gunicorn.conf.py before Django exists: a plain error, raised as the settings would.
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"PAR_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def formatter_for(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else PlainFormatter()


def configure(config: dict) -> None:
    """Django's LOGGING_CONFIG: ``config``, and Python's warnings through it (a JSON line too)."""
    import logging.config

    logging.config.dictConfig(config)
    logging.captureWarnings(True)


def logging_config(fmt: str, level: str) -> dict:
    """Django's LOGGING: one scrubbed line per event on stderr, in the chosen format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "scrub": {"()": "parsite.logs.ScrubSecrets"},
            "one_line_host": {"()": "parsite.logs.OneLineDisallowedHost"},
        },
        "formatters": {
            "plain": {"()": "parsite.logs.PlainFormatter"},
            "json": {"()": "parsite.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": fmt, "filters": ["scrub"]},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.server": {"level": "WARNING"},
            # Its 4xx warnings repeat the access log (and the ACL's own line): 5xx still show.
            "django.request": {"level": "ERROR"},
            "django.security.DisallowedHost": {"filters": ["one_line_host"]},
            # Python's warnings (logging.captureWarnings): to the root's handler, not Django's own.
            "py.warnings": {"handlers": [], "propagate": True},
        },
    }

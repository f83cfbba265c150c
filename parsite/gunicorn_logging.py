"""gunicorn's error and access logs in the project's format, scrubbed (``logger_class`` in gunicorn.conf.py).

gunicorn writes lines Django never sees: a malformed request line (the seed's unencoded
``start_time=2015-02-26 4pm&api_key=...``) is logged whole, key included, and an error while
answering names the URI with its query. Every handler of both logs gets ``ScrubSecrets``.
The access log carries a time and never the query string.
"""

from __future__ import annotations

import logging

from gunicorn import glogging

from parsite.logs import ScrubSecrets, formatter_for, log_format


class GunicornLogger(glogging.Logger):
    """gunicorn's logger with scrubbed handlers, ISO times, and JSON lines under PAR_LOG_FORMAT=json."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        self.fmt = log_format()
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.addFilter(ScrubSecrets())
                handler.setFormatter(formatter_for(self.fmt))

    def access(self, resp, req, environ, request_time) -> None:
        if not self.cfg.accesslog:
            return
        status = str(resp.status).split(None, 1)[0]
        fields = {
            "client": environ.get("REMOTE_ADDR", "-"),
            "method": environ.get("REQUEST_METHOD", "-"),
            "path": environ.get("PATH_INFO", ""),  # never the query string: keys travel there
            "protocol": environ.get("SERVER_PROTOCOL", "-"),
            "status": int(status) if status.isdigit() else status,
            "bytes": getattr(resp, "sent", None) or 0,
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
        }
        message = '{client} "{method} {path} {protocol}" {status} {bytes} {duration_ms}ms'.format(**fields)
        try:
            self.access_log.info(message, extra={"access": fields} if self.fmt == "json" else {})
        except Exception:
            logging.getLogger("gunicorn.error").exception("cannot write the access log")

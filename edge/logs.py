"""Diagnostics on standard error (`[server] log_level`, `log_format`); the access log is `edge.accesslog`."""

from __future__ import annotations

import json
import logging
import sys

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (Unix seconds), level, logger, message, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage()}
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True)


class _StderrHandler(logging.StreamHandler):
    """The handler `configure_logging` installs (and replaces when called again)."""


def configure_logging(level: str, log_format: str) -> None:
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    # pyvips' own messages (libvips' go to stderr from C: edge/transform/render.py)
    logging.getLogger("pyvips").setLevel(max(logging.WARNING, _LEVELS[level]))

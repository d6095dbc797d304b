"""Library log records on the console: above the progress display on a terminal, plain lines otherwise."""

from __future__ import annotations

import logging
import sys

from ..engine.capture import console_only
from .plain import terminal

__all__ = ["LogHandler"]


class LogHandler(logging.Handler):
    """Library log records, printed above the progress display (``warning: ...``)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        with console_only():  # a stage's log gets the record from its own handler, once
            if terminal(sys.stderr):
                from .render import log_line

                log_line(record.levelno, record.levelname, message)
            else:
                sys.stderr.write(f"{record.levelname.lower()}: {message}\n")

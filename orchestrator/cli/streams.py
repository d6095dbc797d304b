"""The CLI's output streams: UTF-8 whatever the locale, and a stdout kept clean for ``--json``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["stdout_to_stderr", "utf8_streams"]


def utf8_streams() -> None:
    """Write UTF-8 whatever the locale: a latin-1 or ASCII locale must not turn "Zoë" into mojibake
    or make ``experiment runs`` crash on "…" (what cannot be shown is replaced, never an error)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8":
            with contextlib.suppress(Exception):  # a stream that was replaced by one that cannot be
                reconfigure(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def stdout_to_stderr(active: bool = True) -> Iterator[None]:
    """Send file descriptor 1 (and ``sys.stdout``) to stderr for the block, children included.

    ``run --json`` writes one JSON document to stdout; a stage's ``print``, a module that
    prints when imported, a torchrun child or a pool worker would otherwise end up inside it.
    The redirection is at the descriptor level, so processes started in the block inherit it;
    stdout is restored (flushed first) before the block's caller prints the document.
    """
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)

"""The CLI's output streams: UTF-8 whatever the locale, and a stdout kept clean for ``--json``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["stdout_failed", "stdout_to_stderr", "utf8_streams"]


def stdout_failed(exc: OSError) -> bool:
    """If ``exc`` is a write to stdout that failed (a full disk, a closed pipe), say so on stderr; True then.

    Stdout is pointed at ``/dev/null`` afterwards, so the interpreter's own flush at exit
    does not fail a second time with a traceback.
    """
    import errno

    if exc.errno not in (errno.ENOSPC, errno.EPIPE, errno.EBADF, errno.EIO, errno.EDQUOT):
        return False
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    if exc.errno != errno.EPIPE:  # a reader that went away (`| head`) needs no message
        with contextlib.suppress(Exception):
            sys.stderr.write(f"error: could not write the output to stdout ({os.strerror(exc.errno or 0)}). "
                             "Fix: free space where stdout goes, or send it elsewhere (> FILE).\n")
    return True


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

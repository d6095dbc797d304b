"""The ``experiment`` command line. Thin: parse, call one library function, render."""

from .commands import main

__all__ = ["main"]

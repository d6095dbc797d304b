"""``python -m orchestrator`` is the ``experiment`` command."""

from .console import main

main()

"""``python -m orchestrator`` is the ``experiment`` command."""

from .cli import main

main(prog_name="experiment")

"""Helpers for the script side of external stages (``ctx.torchrun("external/train.py", ...)``).

A script launched by a stage receives its arguments as ``--name value``, plus
``--output-dir DIR`` (write declared outputs there) and, when an earlier attempt left a
checkpoint, ``--resume-from PATH``. The same script runs by hand with plain arguments::

    from pathlib import Path
    from orchestrator import external

    @external.entrypoint
    def main() -> None:
        args = external.parse_args(features=Path, lr=0.01, epochs=5)
        ...train, resuming from external.resume_checkpoint(args)...
        with external.atomic_path(args.output_dir / "model.ckpt") as tmp:
            save(model, tmp)
        external.write_json(args.output_dir / "metrics.json", {"val_acc": acc})
        external.log_metric("val_acc", acc)

    if __name__ == "__main__":
        main()

Importing this module is cheap (no torch); writers act on rank 0 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "CHECKPOINT_DIR",
    "METRICS_ENV",
    "World",
    "atomic_path",
    "checkpoint_dir",
    "entrypoint",
    "is_rank_zero",
    "latest_checkpoint",
    "log_metric",
    "parse_args",
    "resume_checkpoint",
    "world",
    "write_json",
]

CHECKPOINT_DIR = "checkpoints"  # under --output-dir: where resumable checkpoints go
METRICS_ENV = "ORCHESTRATOR_METRICS_FILE"  # set by ctx.torchrun: log_metric appends JSON lines there
_CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class World:
    """Where this process sits in the job (torchrun's environment; a single process by hand)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def nodes(self) -> int:
        """Number of nodes (for Lightning's ``num_nodes``)."""
        return max(1, self.world_size // max(1, self.local_world_size))


def world() -> World:
    """This process's rank and world size from ``RANK``/``WORLD_SIZE``/``LOCAL_*`` (defaults: 1 process)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                 int(env.get("LOCAL_WORLD_SIZE", 1)))


def is_rank_zero() -> bool:
    """True on the process that should write files (global rank 0)."""
    return world().rank == 0


def entrypoint(fn: F) -> F:
    """Decorate the script's entry function so a failing rank reports its traceback to torchrun.

    Uses ``torch.distributed.elastic.multiprocessing.errors.record`` when torch is installed.
    """
    try:
        from torch.distributed.elastic.multiprocessing.errors import record
    except ImportError:  # pragma: no cover - scripts without torch
        return fn
    return record(fn)  # type: ignore[return-value]


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _converter(kind: Any) -> Callable[[str], Any]:
    if kind is bool:
        return _boolean
    if kind in (int, float, str, Path):
        return kind  # type: ignore[no-any-return]
    if kind in (list, dict, tuple):
        return json.loads
    raise TypeError(f"unsupported argument type {kind!r}: use int, float, str, bool, Path, list or dict")


def parse_args(argv: Sequence[str] | None = None, /, **spec: Any) -> argparse.Namespace:
    """Parse the script's arguments.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        **spec: One entry per argument: a type (``features=Path``: required) or a default
            value whose type is used (``lr=0.01``). ``--name`` and ``--name-with-dashes``
            are both accepted. ``list``/``dict`` values are passed as JSON.

    Returns:
        A namespace with the arguments plus ``output_dir`` (a Path, default: the working
        directory) and ``resume_from`` (a Path or None).
    """
    parser = argparse.ArgumentParser(description="An external stage script (see orchestrator.external).")
    for name, value in spec.items():
        flags = dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"])
        if isinstance(value, type):
            parser.add_argument(*flags, dest=name, type=_converter(value), required=True)
        else:
            kind = type(value) if value is not None else str
            parser.add_argument(*flags, dest=name, type=_converter(kind), default=value)
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", type=Path, default=Path.cwd())
    parser.add_argument("--resume-from", "--resume_from", dest="resume_from", default=None)
    args = parser.parse_args(argv)
    args.output_dir = args.output_dir.resolve()
    args.resume_from = Path(args.resume_from) if args.resume_from else None  # "" on a first launch
    return args


def checkpoint_dir(args: argparse.Namespace) -> Path:
    """Where resumable checkpoints go (``OUTPUT_DIR/checkpoints``); created if missing."""
    folder = Path(args.output_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def latest_checkpoint(folder: Path) -> Path | None:
    """``last.ckpt`` in ``folder`` if present, else its newest ``*.ckpt``/``*.pt``/``*.pth`` file, else None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    found = [p for p in folder.iterdir()
             if p.is_file() and p.suffix in _CHECKPOINT_SUFFIXES and not p.name.startswith(".")]
    return max(found, key=lambda p: (p.stat().st_mtime, p.name)) if found else None


def resume_checkpoint(args: argparse.Namespace) -> Path | None:
    """The checkpoint to resume from: ``--resume-from`` if given, else the latest one in the checkpoint dir."""
    if args.resume_from is not None:
        return Path(args.resume_from)
    return latest_checkpoint(Path(args.output_dir) / CHECKPOINT_DIR)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, every_rank: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path`` in one step.

    Every rank may enter the block (Lightning's ``save_checkpoint`` must be called on all of
    them and writes on rank 0); only rank 0 publishes, unless ``every_rank`` (each rank then
    writes a path of its own). On an exception the temporary file is removed.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = final.with_name(f".{final.name}.partial")
    try:
        yield staged
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    if (every_rank or is_rank_zero()) and staged.exists():
        os.replace(staged, final)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically, on rank 0 only; returns the path."""
    final = Path(path)
    if is_rank_zero():
        with atomic_path(final) as staged:
            staged.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float), encoding="utf-8")
    return final


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Report a metric to the stage (it shows up in the run record); rank 0 only, no-op by hand."""
    target = os.environ.get(METRICS_ENV)
    if not target or not is_rank_zero():
        return
    line = json.dumps({"name": str(name), "value": float(value), "step": step})
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")

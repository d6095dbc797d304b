"""What the ``experiment`` commands share: click settings, error handling, common arguments and option types."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .streams import stdout_failed

if TYPE_CHECKING:
    from ..engine.options import RunOptions

__all__ = ["CONTEXT", "SESSION_COMMANDS", "ShardType", "handle_errors", "run_options", "session_arguments"]

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
SESSION_COMMANDS = ("run", "plan", "dag")  # they resume the GC themselves, after the library's imports



def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-paragraph message and an exit code (2 usage, 1 failure)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import OrchestratorError

        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            result = fn(*args, **kwargs)
            if sys.stdout is not None:
                sys.stdout.flush()  # a full or closed stdout fails here, with a message, not at exit
            return result
        except OrchestratorError as exc:
            if debug:
                raise
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:
            if isinstance(exc, OSError) and stdout_failed(exc):
                sys.exit(1)
            if debug or not _unreachable_store(exc):
                raise
            click.secho(f"error: cannot reach the artifact store ({type(exc).__name__}: {exc}). Fix: check the "
                        "--cache-dir URL, the endpoint and credentials (ORCHESTRATOR_STORAGE_OPTIONS, AWS_*) and "
                        "the network; a local folder needs none of these.", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            sys.exit(130)

    return wrapper


def _unreachable_store(exc: BaseException) -> bool:
    """A remote store's client failed to connect (not an orchestrator error, not a bug of ours)."""
    from ..errors import OrchestratorError

    if isinstance(exc, OrchestratorError):
        return False
    module = type(exc).__module__.split(".")[0]
    return module in ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs") or isinstance(exc, ConnectionError)


def session_arguments(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                      help="Artifact store (default: cache/ in the project, or $ORCHESTRATOR_CACHE_DIR).")(fn)
    fn = click.option("--target", "targets", multiple=True, metavar="ARTIFACT",
                      help="Produce only this artifact and what it needs (repeatable).")(fn)
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override a param in every set (YAML-typed, dotted keys; repeatable).")(fn)
    fn = click.argument("names", nargs=-1, required=True, metavar="PARAMS_SET...")(fn)
    return fn


class ShardType(click.ParamType):
    """``I/N``: this process's share of every map stage's items."""

    name = "I/N"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        index, sep, count = str(value).partition("/")
        if not sep or not index.isdigit() or not count.isdigit():
            self.fail(f"{value!r} is not I/N (e.g. --shard 1/4)", param, ctx)
        i, n = int(index), int(count)
        if n < 1 or not 1 <= i <= n:
            self.fail(f"{value!r}: I must be between 1 and N (got {i} of {n}). Fix: --shard 1/{max(n, 1)} ... "
                      f"--shard {max(n, 1)}/{max(n, 1)}", param, ctx)
        return i, n


class JobsType(click.ParamType):
    """``-j N`` (a number of stages at once) or ``-j auto`` (as many as the node's resources admit)."""

    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or value == "auto":
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdigit() or int(text) < 1:
            self.fail(f"{value!r} is neither a number of stages (1 or more) nor 'auto'. Fix: -j 4 or -j auto",
                      param, ctx)
        return int(text)


def run_options(workers: int | None, shard: tuple[int, int] | None, max_item_failures: int | None,
                devices: str | None, strict_data: bool) -> RunOptions:
    """The options ``experiment run``'s flags ask for (unset ones leave the stages' own)."""
    from ..engine.options import MapOptions, RunOptions

    listed = tuple(d.strip() for d in (devices or "").split(",") if d.strip())
    return RunOptions(MapOptions(workers, shard, max_item_failures, listed), strict_data)

"""What ``ctx.torchrun`` does around a launch: arguments, resume, outputs, metrics, failures.

The script runs in the stage's attempt folder (kept across failed attempts of one
(stage, key), removed after success), which is also its ``--output-dir``. A checkpoint
left in ``checkpoints/`` there by an earlier attempt is passed as ``--resume-from``; each of
these is configurable (:class:`ScriptInterface`) so a script runs as it is.
Declared outputs are checked after a clean exit and returned as paths for the stage to
return; the worker publishes them to the store only then.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ExternalScriptFailed, TrialPruned
from ..external import METRICS_ENV, latest_checkpoint
from .launch import LaunchResult, TorchrunSpec, launch
from .request import LaunchSite, ScriptOutputs, TorchrunRequest

logger = logging.getLogger(__name__)

__all__ = ["LOG_NAME", "find_checkpoint", "format_args", "run_torchrun"]

LOG_NAME = "torchrun.log"  # the merged log of every launch, in the attempt folder
RUN_DIR = ".torchrun"  # per-rank logs, TMPDIR and reported metrics, in the attempt folder


def format_args(args: Mapping[str, Any], root: Path, *, dashes: bool = False) -> list[str]:
    """``{"lr": 0.1, "train_set": Path("a")}`` -> ``["--lr", "0.1", "--train_set", "/root/a"]``.

    Names are passed as written (``dashes``: ``_`` becomes ``-``). Paths become absolute
    strings (relative ones are taken from ``root``), booleans ``true``/``false``, lists and
    dicts JSON; ``None`` values are left out.
    """
    argv: list[str] = []
    for name, value in args.items():
        if value is None:
            continue
        if isinstance(value, Path):
            text = str(value if value.is_absolute() else (root / value).resolve())
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple, dict)):
            text = json.dumps(value, default=str)
        else:
            text = str(value)
        flag = str(name) if str(name).startswith("-") else f"--{name}"
        argv += [flag.replace("_", "-") if dashes else flag, text]
    return argv


def find_checkpoint(attempt: Path, where: str) -> Path | None:
    """The checkpoint an earlier attempt left at ``where`` (a folder or a glob under ``attempt``), or None."""
    if any(c in where for c in "*?["):
        found = [p for p in attempt.glob(where) if p.is_file() and not p.name.startswith(".")]
        named = [p for p in found if p.name == "last.ckpt"]
        return named[0] if named else (max(found, key=lambda p: (p.stat().st_mtime, p.name)) if found else None)
    return latest_checkpoint(attempt / where)


def run_torchrun(request: TorchrunRequest, ctx: LaunchSite) -> ScriptOutputs:
    """Run ``request.script`` under torchrun for the stage at ``ctx``; see :meth:`StageContext.torchrun`."""
    script, interface = request.script, request.interface
    root = Path(ctx.project_root)
    path = Path(script) if Path(script).is_absolute() else root / script
    shown = _shown(path, root)

    def failure(message: str, **details: Any) -> ExternalScriptFailed:
        where = f"stage {ctx.stage!r} [{ctx.param_set}]: {shown}"
        return ExternalScriptFailed(f"{where} {message}", stage=ctx.stage, param_set=ctx.param_set,
                                    script=shown, **details)

    if not path.is_file():
        raise failure(f"does not exist (looked for {path}). Fix: create the script, or correct the path "
                      "given to ctx.torchrun (relative to the project root).")
    declared = _check_outputs(request.outputs, failure)
    attempt = ctx.attempt_dir
    run_dir = attempt / RUN_DIR
    resume = find_checkpoint(attempt, interface.checkpoints)
    for relative in declared.values():  # a stale output of an earlier attempt must not pass for a new one,
        if resume is None or not (attempt / relative).is_dir():  # but a resumed run goes on filling its folders
            _remove(attempt / relative)
    metrics_file = run_dir / "metrics.jsonl"
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume is None:
        metrics_file.unlink(missing_ok=True)
    else:
        logger.warning("%s [%s]: resuming %s from %s", ctx.stage, ctx.param_set, shown, resume)
    script_args = format_args(request.args, root, dashes=interface.arg_names == "dashes")
    if interface.output_dir_arg:
        script_args += [interface.output_dir_arg, str(attempt)]
    if interface.resume_arg:
        script_args += [interface.resume_arg, str(resume) if resume is not None else ""]
    spec = TorchrunSpec(
        script=path, workdir=attempt, run_dir=run_dir, log_path=attempt / LOG_NAME, args=tuple(script_args),
        nproc_per_node=request.nproc_per_node, gpus=request.gpus, nnodes=request.nnodes,
        node_rank=request.node_rank, rdzv_endpoint=request.rdzv_endpoint, rdzv_id=f"{ctx.stage}-{ctx.key[:16]}",
        env={**{k: str(v) for k, v in request.env.items()}, METRICS_ENV: str(metrics_file),
             "ORCHESTRATOR_OUTPUT_DIR": str(attempt), "ORCHESTRATOR_RESUME_FROM": str(resume or "")},
        timeout=request.timeout, all_ranks=request.all_ranks, python_path=(str(root),), stop=threading.Event(),
    )
    try:
        with _Follower(ctx, metrics_file, spec.stop):  # the script's log_metric values reach the stage as they come
            result = launch(spec, request.on_output)
    except ValueError as exc:
        raise failure(f"could not be launched: {exc}") from exc
    except OSError as exc:
        raise failure(f"could not be launched: {exc}. Fix: check that {spec.python} runs.") from exc
    if spec.stop is not None and spec.stop.is_set():
        raise TrialPruned(f"{ctx.stage} [{ctx.param_set}]: the search's pruner stopped this trial; every rank of "
                          f"{shown} was stopped (SIGTERM, then SIGKILL). Its checkpoints stay in {attempt}.")
    if not result.ok:
        resumable = find_checkpoint(attempt, interface.checkpoints) is not None
        raise failure(_explain(result, attempt, resumable, interface.checkpoints), returncode=result.returncode, rank=result.failing_rank,
                      log_path=str(result.log_path), tail=result.tail)
    produced = {name: attempt / relative for name, relative in declared.items()}
    missing = {name: relative for name, relative in declared.items() if not produced[name].exists()}
    if missing:
        listed = ", ".join(f"{name!r} ({relative})" for name, relative in missing.items())
        verb = f"output {listed} is" if len(missing) == 1 else f"outputs {listed} are"
        raise failure(
            f"exited 0 but declared {verb} missing in {attempt}. Log: {result.log_path}. Fix: write "
            f"args.output_dir / {next(iter(missing.values()))!r} in the script (on one rank), or correct "
            "outputs= in ctx.torchrun.",
            returncode=0, log_path=str(result.log_path), tail=result.tail,
        )
    logger.info("%s [%s]: %s finished in %.1f s", ctx.stage, ctx.param_set, shown, result.seconds)
    return ScriptOutputs(produced)


def _explain(result: LaunchResult, attempt: Path, resumable: bool, checkpoints: str) -> str:
    if result.timed_out:
        what = (f"timed out after {result.seconds:.0f} s; every rank was stopped (SIGTERM, then SIGKILL)")
        fix = "raise timeout= in ctx.torchrun, or find where it hangs from the last lines above"
    else:
        code = result.rank_exit_code
        fix = "correct the script (see its last lines above, and the log)"
        if result.failing_rank is not None and code is not None and code < 0:
            what = f"failed: rank {result.failing_rank} was killed by {_signal_name(-code)}"
            if -code == signal.SIGKILL:
                fix = ("if it ran out of memory (the kernel's OOM killer sends SIGKILL), lower the batch size "
                       "or nproc_per_node")
        elif result.failing_rank is not None:
            what = f"failed: rank {result.failing_rank} exited with code {code}"
        elif result.returncode < 0:
            what = f"failed: torchrun was killed by {_signal_name(-result.returncode)}"
        else:
            what = f"failed: torchrun exited with code {result.returncode}"
    whose = "torchrun" if result.tail_rank is None else f"rank {result.tail_rank}"
    lines = "\n".join(f"    {line}" for line in result.tail) or "    (no output)"
    again = ("then run the same command again: training resumes from the last checkpoint in "
             f"{attempt / checkpoints}" if resumable else "then run the same command again")
    return (f"{what} (torchrun exit code {result.returncode}). Log: {result.log_path}\n"
            f"Last lines of {whose}:\n{lines}\nFix: {fix}, {again}.")


def _signal_name(number: int) -> str:
    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


def _check_outputs(outputs: Mapping[str, str], failure: Callable[..., ExternalScriptFailed]) -> dict[str, str]:
    declared: dict[str, str] = {}
    for name, relative in outputs.items():
        rel = Path(str(relative))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise failure(f"output {name!r} -> {relative!r} must be a path relative to the output dir. "
                          f"Fix: outputs={{{name!r}: 'model.ckpt'}}.")
        declared[str(name)] = rel.as_posix()
    return declared


class _Follower:
    """Feeds the metrics a script appends to ``path`` (``log_metric``) to the stage while it runs, so
    the run records and the UI show its curves live; what is left is read once the script ends."""

    def __init__(self, ctx: LaunchSite, path: Path, stop: threading.Event | None = None, every: float = 1.0) -> None:
        self.ctx, self.path, self.every, self.stop = ctx, path, every, stop
        self.offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="orchestrator-torchrun-metrics", daemon=True)

    def __enter__(self) -> _Follower:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.read()

    def _follow(self) -> None:
        while not self._stop.wait(self.every):
            self.read()
            if self.stop is not None and not self.stop.is_set() and self.ctx.pruned():
                logger.warning("%s [%s]: pruned by the search; stopping the script", self.ctx.stage, self.ctx.param_set)
                self.stop.set()

    def read(self) -> None:
        """Take the complete lines written since the last read."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                entry = json.loads(line)
                self.ctx.metric(entry["name"], entry["value"], step=entry.get("step"), show=False)
            except (ValueError, KeyError, TypeError):
                logger.warning("%s: ignoring a malformed metrics line %r", self.ctx.stage, line[:200])


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)

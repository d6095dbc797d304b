"""Run one task: load inputs from the store, call the stage, store its outputs.

:func:`execute` is what every executor runs, in-process or in a remote worker. It never
raises for a failure of the stage or its cachers: it returns a :class:`TaskResult`
carrying a :class:`TaskError`, so a failing stage can never corrupt the driver's
bookkeeping. A stage that calls ``sys.exit()`` (or raises any other ``BaseException`` but
Ctrl-C's ``KeyboardInterrupt``, which still propagates) fails like any stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CorruptObjectError, DefinitionError, TrialPruned, user_traceback
from ..machine import RESERVED_ENV
from ..project.declaration import Stage
from ..project.readwatch import watching
from ..store.artifactio import (
    OutputNotStored,
    load_artifact,
    publish_output,
    serialize_output,
)
from ..store.base import Store
from ..store.location import open_store
from ..torchrun.request import ScriptOutputs
from .capture import capture, log_only, peak_rss, reset_peak_rss
from .context import StageContext, live_metrics_path, prune_marker_path
from .handoff import Handoff
from .imported import code_mismatch, resolve_stage
from .task import FailureKind, InputSpec, Task, TaskError, TaskFailed, TaskResult

logger = logging.getLogger(__name__)

__all__ = ["describe_exception", "execute"]



def execute(task: Task, progress: Callable[[str, Any], None] | None = None,
            handoff: Handoff | None = None, *, in_process: bool = False) -> TaskResult:
    """Execute ``task``; failures come back as ``TaskResult.error``.

    ``progress`` receives map-stage progress (``(node_id, MapProgress)``) when given.
    ``handoff`` (in-process executors) passes the previous task's outputs to this one and
    this one's to the next, so a consumer running right after its producer skips the reload.
    ``in_process``: the task runs in the driver's process, on the very code objects that were
    fingerprinted, so the check that the imported code matches ``task.code`` is skipped.
    """
    # the previous task's outputs this one reads; the others are dropped before it starts
    held = handoff.take({s.record.hash for s in task.inputs if not s.as_path}) if handoff is not None else {}
    reset_peak_rss()  # this stage's peak, not the process's whole life (earlier stages, imports)
    with capture(task.log_path), reserved_gpus(task.gpus):
        result = _execute(task, progress, held, handoff, in_process)
        if result.error is not None:  # a failed stage always leaves a log, ending with why it failed
            error = result.error
            log_only()(f"\n{task.stage} [{task.param_set}] failed: {error.message}\n{error.traceback or ''}")
    return replace(result, peak_rss=peak_rss())


@contextlib.contextmanager
def reserved_gpus(gpus: str | None) -> Iterator[None]:
    """While the task runs, it (and every process it starts) sees only the GPUs reserved for it."""
    if gpus is None:
        yield
        return
    saved = {name: os.environ.get(name) for name in ("CUDA_VISIBLE_DEVICES", RESERVED_ENV)}
    os.environ["CUDA_VISIBLE_DEVICES"] = os.environ[RESERVED_ENV] = gpus
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _execute(task: Task, progress: Callable[[str, Any], None] | None, held: dict[str, Any],
             handoff: Handoff | None, in_process: bool) -> TaskResult:
    started = time.perf_counter()
    store = open_store(task.store)
    ctx: StageContext | None = None
    try:
        stage = resolve_stage(task.module, task.stage, task.code_root or task.project_root)
        if task.code and not in_process:
            _check_code(task, stage)
        kwargs = _load_inputs(task, store, held)
        ctx = StageContext(
            stage=task.stage,
            param_set=task.param_set,
            params=task.set_values,
            seed=task.seed,
            key=task.key,
            store=store,
            project_root=Path(task.project_root),
            live_metrics=live_metrics_path(task.log_path) if task.log_path else None,
            prune_marker=prune_marker_path(task.log_path) if task.log_path else None,
        )
        declared = _declared_files(task, stage, kwargs, store)
        with watching() as watch:
            if stage.map_over:
                value = _run_map(task, stage, kwargs, store, ctx, progress)
            else:
                kwargs.update({p.name: task.params[p.name] for p in stage.params})
                if stage.takes_ctx:
                    kwargs["ctx"] = ctx
                value = _call(stage, kwargs)
        _check_reads(task, ctx, watch.undeclared(declared, Path(task.project_root or ".")))
        values = _split_outputs(stage, value)
        for name in stage.options.get("metrics") or ():  # declared metrics outputs: in the records and reports too
            if isinstance(values.get(name), Mapping):
                ctx.report(name, {k: v for k, v in values[name].items()
                                  if isinstance(v, (int, float)) and not isinstance(v, bool)})
        try:
            staged = {name: serialize_output(store, name, obj, task.cachers.get(name)) for name, obj in values.items()}
            del value, kwargs
            outputs = {name: publish_output(store, name, output) for name, output in staged.items()}
        except OutputNotStored as exc:
            raise TaskFailed(TaskError(FailureKind(exc.kind), exc.message, exc.exc_type, exc.traceback)) from exc
        for name, output in staged.items():
            # popped straight into keep(): it sees whether anything else refers to it; a value holding paths
            # is not handed on (a reload gives paths to the stored copies, which the consumer must see)
            if handoff is not None and not output.refs:
                handoff.keep(outputs[name].hash, output.cacher, values.pop(name))
        del values
        if ctx is not None and stage.options.get("keep_attempts") is not True:
            _drop_attempt(store, task)
        return TaskResult(task.node, outputs, time.perf_counter() - started, ctx.extras())
    except TaskFailed as failure:
        extras = ctx.extras() if ctx is not None else {}
        return TaskResult(task.node, seconds=time.perf_counter() - started, extras=extras, error=failure.error)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a bug in loading or resolving, a sys.exit() on import: still never raise
        error = TaskError(FailureKind.STAGE, describe_exception(exc), type(exc).__name__, traceback.format_exc())
        return TaskResult(task.node, seconds=time.perf_counter() - started, error=error)
    finally:
        if ctx is not None:
            ctx.close()


def _declared_files(task: Task, stage: Stage, kwargs: Mapping[str, Any], store: Store) -> list[Any]:
    """What a stage may read without it being an undeclared dependency: the store, data params, input files."""
    root = Path(task.project_root or ".")
    found: list[Any] = [p for p in (getattr(store, "root", None), getattr(store, "cache", None)) if p is not None]
    for param in stage.all_params:
        value = task.params.get(param.name)
        if param.data is not None and isinstance(value, (str, Path)):
            text = str(value).split("*")[0].split("?")[0]
            found.append(root / text if not Path(text).is_absolute() else Path(text))
    for value in kwargs.values():  # files() inputs: lists of paths into the project
        if isinstance(value, list) and value and isinstance(value[0], Path):
            found += value
    return found


def _check_reads(task: Task, ctx: StageContext, undeclared: list[str]) -> None:
    """Note files the stage read that its key does not cover (``--strict-data``: fail it)."""
    if not undeclared:
        return
    ctx.note("undeclared_reads", undeclared)
    if task.options.strict_data:
        shown = ", ".join(undeclared[:5]) + (f" and {len(undeclared) - 5} more" if len(undeclared) > 5 else "")
        raise TaskFailed(TaskError(
            FailureKind.DATA,
            f"{task.stage} read {shown}, which {'is' if len(undeclared) == 1 else 'are'} not part of its key "
            "(--strict-data). Fix: name the path in a param annotated Annotated[Path, Data()], or make it an "
            "input with files('...', name=...).",
            "UndeclaredRead",
        ))


def _check_code(task: Task, stage: Stage) -> None:
    """The code this process imported is the code the key was computed for, or the node fails."""
    message = code_mismatch(task, stage)
    if message:
        raise TaskFailed(TaskError(FailureKind.CODE, message, "CodeChanged"))


def _call(stage: Stage, kwargs: dict[str, Any]) -> Any:
    try:
        return stage.fn(**kwargs)
    except KeyboardInterrupt:
        raise
    except TrialPruned as exc:
        raise TaskFailed(TaskError(FailureKind.PRUNED, str(exc), type(exc).__name__)) from exc
    except BaseException as exc:  # SystemExit too: a stage that exits fails, the run goes on
        raise TaskFailed(
            TaskError(FailureKind.STAGE, describe_exception(exc), type(exc).__name__, user_traceback(exc))
        ) from exc


def describe_exception(exc: BaseException) -> str:
    """How a stage's exception reads in FAILED lines: ``ValueError: bad``, ``SystemExit(3): ...``."""
    if isinstance(exc, SystemExit):
        return (f"SystemExit({exc.code!r}): the stage called sys.exit(). Fix: return the stage's outputs, "
                "or raise an exception to fail it (a stage cannot end the run).")
    if isinstance(exc, Exception):
        return f"{type(exc).__name__}: {exc}"
    return repr(exc)


def _run_map(task: Task, stage: Stage, kwargs: dict[str, Any], store: Store, ctx: StageContext,
             progress: Callable[[str, Any], None] | None) -> Any:
    from ..map.driver import run_map

    mapped = kwargs.pop(stage.map_over or "")
    try:
        return run_map(task, stage, mapped, kwargs, store, ctx, progress)
    except DefinitionError as exc:
        raise TaskFailed(TaskError(FailureKind.STAGE, str(exc), type(exc).__name__)) from exc


def _load_inputs(task: Task, store: Store, held: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for spec in task.inputs:
        if not spec.as_path and spec.record.hash in held:  # handed over once; a second reader loads it
            value = held.pop(spec.record.hash)
        else:
            value = _load(task, store, spec)
        if spec.label:
            kwargs.setdefault(spec.name, {})[spec.label] = value
        else:
            kwargs[spec.name] = value
        del value  # kwargs is its only holder: the stage may modify it in place, and it can be handed on
    return kwargs


def _load(task: Task, store: Store, spec: InputSpec) -> Any:
    try:
        return load_artifact(store, spec.record, as_path=spec.as_path, stage=task.stage, param_set=task.param_set)
    except CorruptObjectError as exc:
        raise TaskFailed(
            TaskError(FailureKind.CORRUPT, str(exc), type(exc).__name__, producer=spec.producer, artifact=spec.name)
        ) from exc
    except Exception as exc:
        message = (
            f"input {spec.name!r} could not be loaded with cacher {spec.record.cacher!r}: "
            f"{type(exc).__name__}: {exc}. Fix: check that the cacher can read what it wrote "
            f"(or rerun the producer with --force)."
        )
        raise TaskFailed(TaskError(FailureKind.CACHER, message, type(exc).__name__, user_traceback(exc))) from exc


def _split_outputs(stage: Stage, value: Any) -> dict[str, Any]:
    outputs = stage.outputs
    if len(outputs) == 1:
        if isinstance(value, ScriptOutputs) and list(value) == list(outputs):
            return dict(value)  # ctx.torchrun's {name: path} for a one-output stage: the path is the output
        return {outputs[0]: value}
    if isinstance(value, Mapping) and set(value) == set(outputs):
        return {name: value[name] for name in outputs}
    if isinstance(value, (tuple, list)) and len(value) == len(outputs):
        return dict(zip(outputs, value))
    if isinstance(value, Mapping):
        found = f"a dict with keys {sorted(map(str, value))}"
    elif isinstance(value, (tuple, list)):
        found = f"{len(value)} values"
    else:
        found = f"one {type(value).__name__}"
    raise TaskFailed(
        TaskError(
            FailureKind.OUTPUTS,
            f"declares {len(outputs)} outputs {list(outputs)} but returned {found}. Fix: return a tuple "
            f"of {len(outputs)} values in that order, or a dict keyed by those names.",
        )
    )


def _drop_attempt(store: Store, task: Task) -> None:
    store.workspace.drop_attempt(task.stage, task.key)

"""The stage context: what a stage sees of the run through its ``ctx`` parameter."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import TrialPruned
from ..store.base import Store
from ..torchrun.request import (
    LaunchSite,
    ScriptInterface,
    ScriptOutputs,
    TorchrunRequest,
)

__all__ = ["StageContext", "live_metrics_path", "prune_marker_path"]


def live_metrics_path(log_path: str | Path) -> Path:
    """Where a node's metrics are appended as they are reported (beside its log), for live curves."""
    return Path(log_path).with_suffix(".metrics.jsonl")


def prune_marker_path(log_path: str | Path) -> Path:
    """The file a search's pruner creates (beside the node's log) to stop its trial early."""
    return Path(log_path).with_suffix(".prune")


class StageContext:
    """Handed to stages that declare a ``ctx`` parameter.

    Attributes:
        stage: The stage name.
        param_set: The param-set name (``"*"`` in aggregates).
        params: The whole param set (aggregates: ``{set_name: params}``). Reading it makes
            every value of the set part of the stage's cache key.
        seed: A seed derived from the stage name and the set's ``seed`` param.
        key: The cache key of this execution.
        logger: A logger named after the stage.
        device: The device of a device worker (map stages), else None.
        worker: What a map stage's setup function returned, else None.
    """

    def __init__(
        self,
        *,
        stage: str,
        param_set: str,
        params: Mapping[str, Any],
        seed: int,
        key: str,
        store: Store,
        project_root: Path,
        live_metrics: Path | None = None,
        prune_marker: Path | None = None,
    ) -> None:
        self.stage = stage
        self.param_set = param_set
        self.params = params
        self.seed = seed
        self.key = key
        self.logger = logging.getLogger(f"orchestrator.stage.{stage}")
        self.device: Any = None
        self.worker: Any = None
        self.project_root = project_root
        self.store = store  # file sets memoize their file hashes in it
        self.workspace = store.workspace
        self._scratch: Path | None = None
        self._metrics: list[dict[str, Any]] = []
        self._live = live_metrics  # each metric is appended here as it comes: the UI draws running curves
        self._prune = prune_marker
        self._reports: list[dict[str, Any]] = []
        self._notes: dict[str, Any] = {}  # what the library records about the execution (undeclared reads)

    def __repr__(self) -> str:
        return f"<StageContext {self.stage}[{self.param_set}]>"

    @property
    def scratch_dir(self) -> Path:
        """A private folder for temporary files; removed after the stage."""
        if self._scratch is None:
            self._scratch = self.workspace.scratch_dir()
        return self._scratch

    @property
    def attempt_dir(self) -> Path:
        """A folder kept across failed attempts of this (stage, key); removed after success."""
        return self.workspace.attempt_dir(self.stage, self.key)

    def metric(self, name: str, value: float, step: int | None = None, *, show: bool = True) -> None:
        """Record a scalar metric (optionally at a step) for the run records and reports.

        It is also shown on the console (and in the stage's log) as the stage runs, so a
        training loop's per-epoch numbers are seen live; ``show=False`` only records it.
        """
        number = float(value)
        if not math.isfinite(number):
            self.logger.warning("metric %s is %s", name, number)
        entry = {"name": str(name), "value": number, "step": step, "time": time.time()}
        self._metrics.append(entry)
        if self._live is not None:
            try:
                if not self._metrics[:-1]:  # the first one: the log folder may not exist yet
                    self._live.parent.mkdir(parents=True, exist_ok=True)
                with open(self._live, "a", encoding="utf-8") as live:
                    live.write(json.dumps(entry) + "\n")
            except (OSError, ValueError):  # a display aid: a full disk or an odd value must not fail the stage
                self._live = None
        if show:
            at = f" (step {step})" if step is not None else ""
            sys.stderr.write(f"  {self.stage} [{self.param_set}] {name} = {number:.6g}{at}\n")
        if step is not None and threading.current_thread() is threading.main_thread() and self.pruned():
            raise TrialPruned(f"{self.stage} [{self.param_set}]: the search's pruner stopped this trial at step "
                              f"{step} ({name} = {number:.6g}); what it checkpointed stays in {self.attempt_dir}")

    def pruned(self) -> bool:
        """Whether a search's pruner asked this trial to stop (``ctx.metric(..., step=)`` then raises)."""
        return self._prune is not None and self._prune.exists()

    def checkpoint(self, state: Any, name: str = "state") -> Path:
        """Save resumable state (epoch, weights, optimizer...) atomically in the attempt folder.

        The attempt folder belongs to this (stage, key): a rerun after a crash or a Ctrl-C,
        with the same code and params, gets the last saved state back from :meth:`resume`.
        It is removed once the stage succeeds. Anything picklable works (torch tensors and
        state dicts too).
        """
        import cloudpickle

        folder = self.attempt_dir
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.ctx-checkpoint"
        staged = folder / f".{name}.{os.getpid()}.tmp"
        with open(staged, "wb") as handle:
            cloudpickle.dump(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, target)
        return target

    def resume(self, name: str = "state", default: Any = None) -> Any:
        """The state the last :meth:`checkpoint` of an earlier attempt saved, else ``default``."""
        import pickle

        target = self.attempt_dir / f"{name}.ctx-checkpoint"
        if not target.is_file():
            return default
        with open(target, "rb") as handle:
            return pickle.load(handle)

    def report(self, name: str, obj: Any) -> None:
        """Attach a reportable: text/markdown, a dict of metrics, a DataFrame or a matplotlib figure."""
        from .reportables import to_reportable

        self._reports.append(to_reportable(str(name), obj))

    def torchrun(
        self,
        script: str | Path,
        args: Mapping[str, Any] | None = None,
        outputs: Mapping[str, str] | None = None,
        nproc_per_node: int | str = "auto",
        timeout: float | None = None,
        env: Mapping[str, Any] | None = None,
        gpus: int | None = None,
        nnodes: int = 1,
        node_rank: int = 0,
        rdzv_endpoint: str | None = None,
        all_ranks: bool = False,
        on_output: Callable[[str], None] | None = None,
        *,
        arg_names: str = "as_written",
        output_dir_arg: str | None = "--output-dir",
        resume_arg: str | None = "--resume-from",
        checkpoints: str = "checkpoints",
    ) -> ScriptOutputs:
        """Run an external script under torchrun and return its declared outputs as paths.

        The script runs in this (stage, key)'s attempt folder, which is also passed as
        ``--output-dir``; ``args`` are passed as ``--name value`` (names as written); a
        checkpoint left in ``checkpoints/`` by an earlier failed attempt is passed as
        ``--resume-from`` (``""`` on a first launch). Each is configurable below. The
        script's file (and the project modules it imports) is part of the stage's key when
        ``script`` is a string literal here (else list it in ``@stage(scripts=[...])``).

        Args:
            script: The script, relative to the project root (or absolute).
            args: Script arguments; Paths are passed as absolute strings.
            outputs: ``{output_name: file name under the output dir}`` to check and return.
            nproc_per_node: Processes per node, or ``"auto"``: one per visible GPU, else 2 on CPU (gloo).
            timeout: Seconds before every rank is stopped and the stage fails (None: no limit).
            env: Extra environment variables for the ranks.
            gpus: Pick this many free GPUs (``CUDA_VISIBLE_DEVICES``); CPU fallback when there are none.
            nnodes: Number of nodes; above 1, also pass ``node_rank`` and ``rdzv_endpoint``.
            node_rank: This node's rank.
            rdzv_endpoint: ``host:port`` of the rendezvous (several nodes).
            all_ranks: Stream every rank's output, not only rank 0's.
            on_output: Called with each streamed line (default: written to ``sys.stderr``).
            arg_names: ``"as_written"`` (``--train_set``) or ``"dashes"`` (``--train-set``).
            output_dir_arg: The argument naming the output folder, or None (``ORCHESTRATOR_OUTPUT_DIR``
                is always set; the script runs in that folder).
            resume_arg: The argument naming the checkpoint to resume from, or None; given from the first
                launch (``""`` while there is none). ``ORCHESTRATOR_RESUME_FROM`` is always set.
            checkpoints: Where the script leaves checkpoints, under the output folder: a folder or a
                glob (``"model_checkpoints/*.ckpt"``).

        Returns:
            ``{output_name: Path}``, ready to return from the stage.

        Raises:
            ExternalScriptFailed: a missing script, a non-zero exit, a timeout, a signal, or a
                declared output that was not written.
        """
        from ..torchrun.stage import run_torchrun

        interface = ScriptInterface(arg_names, output_dir_arg, resume_arg, checkpoints)
        request = TorchrunRequest(script, dict(args or {}), dict(outputs or {}), nproc_per_node, timeout,
                                  dict(env or {}), gpus, nnodes, node_rank, rdzv_endpoint, all_ranks, on_output,
                                  interface)
        site = LaunchSite(self.stage, self.param_set, self.key, Path(self.project_root), self.attempt_dir,
                          self.metric, self.pruned)
        return run_torchrun(request, site)

    def extras(self) -> dict[str, Any]:
        """Metrics and reports collected so far (stored with the stage's outputs)."""
        extras: dict[str, Any] = {}
        if self._metrics:
            extras["metrics"] = list(self._metrics)
        if self._reports:
            extras["reports"] = list(self._reports)
        extras.update(self._notes)
        return extras

    def note(self, name: str, value: Any) -> None:
        """Record ``value`` with the execution (library use: ``undeclared_reads``)."""
        self._notes[name] = value

    def close(self) -> None:
        """Remove the scratch folder."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

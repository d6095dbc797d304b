"""What a stage asks of ``ctx.torchrun``, and what it gets back (plain values, no engine imports).

:class:`TorchrunRequest` is the one object that carries a launch from the stage context to
:func:`orchestrator.torchrun.stage.run_torchrun`; :class:`LaunchSite` is what that side needs of
the running stage (where it is, which attempt folder, where metrics go).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..external import CHECKPOINT_DIR

__all__ = ["LaunchSite", "ScriptInterface", "ScriptOutputs", "TorchrunRequest"]


class ScriptOutputs(dict[str, Path]):
    """``{output_name: Path}`` from :meth:`StageContext.torchrun`, ready to return from the stage.

    A stage with several outputs returns it like any dict keyed by output name; a stage with
    one output may return it too (``return ctx.torchrun(..., outputs={"model": "model.ckpt"})``):
    its one path is that output, not a dict to pickle.
    """


@dataclass(frozen=True)
class ScriptInterface:
    """How a script wants to be called, so existing scripts run unchanged.

    Attributes:
        arg_names: ``"as_written"`` (``train_set`` -> ``--train_set``) or ``"dashes"``
            (``--train-set``).
        output_dir_arg: The argument that receives the output folder (the attempt folder the
            script runs in), or None to pass none. ``ORCHESTRATOR_OUTPUT_DIR`` is always set.
        resume_arg: The argument that receives the checkpoint to resume from, or None. It is
            given from the first launch on, as ``""`` while there is no checkpoint, so the
            script's interface never changes after a crash. ``ORCHESTRATOR_RESUME_FROM`` is
            always set (empty while there is none).
        checkpoints: Where the script leaves checkpoints, relative to the output folder: a
            folder (its ``last.ckpt``, else its newest ``.ckpt``/``.pt``/``.pth``) or a glob
            (``model_checkpoints/*.ckpt``: the newest match).
    """

    arg_names: str = "as_written"
    output_dir_arg: str | None = "--output-dir"
    resume_arg: str | None = "--resume-from"
    checkpoints: str = CHECKPOINT_DIR

    def __post_init__(self) -> None:
        if self.arg_names not in ("as_written", "dashes"):
            raise ValueError(f"arg_names={self.arg_names!r}: use 'as_written' or 'dashes'")


@dataclass(frozen=True)
class TorchrunRequest:
    """One ``ctx.torchrun(...)`` call; the fields are its arguments (see :meth:`StageContext.torchrun`)."""

    script: str | Path
    args: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    nproc_per_node: int | str = "auto"
    timeout: float | None = None
    env: Mapping[str, Any] = field(default_factory=dict)
    gpus: int | None = None
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    all_ranks: bool = False
    on_output: Callable[[str], None] | None = None
    interface: ScriptInterface = ScriptInterface()


@dataclass(frozen=True)
class LaunchSite:
    """The running stage a launch belongs to."""

    stage: str
    param_set: str
    key: str
    project_root: Path
    attempt_dir: Path
    metric: Callable[..., None]  # ctx.metric: reported metrics flow back into the stage's records
    pruned: Callable[[], bool] = lambda: False  # ctx.pruned: a search's pruner asked the trial to stop

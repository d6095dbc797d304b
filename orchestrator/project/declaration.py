"""The :class:`Stage` value: a declared function with its inputs, outputs, params and options.

The decorators that make one live in :mod:`orchestrator.project.decorators`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import DefinitionError

__all__ = ["ARTIFACT_NAME", "CTX", "Param", "Stage"]

CTX = "ctx"
ARTIFACT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    """A stage parameter that is looked up in the param set."""

    name: str
    default: Any = _NO_DEFAULT
    annotation: Any = _NO_DEFAULT
    data: Any = None  # a :class:`~orchestrator.project.datadeps.Data` marker: the path's content is in the key

    @property
    def required(self) -> bool:
        """True when the param set must provide a value."""
        return self.default is _NO_DEFAULT


@dataclass(frozen=True, eq=False)
class Stage:
    """A declared stage: a function plus the artifacts it consumes and produces.

    Calling a Stage calls the underlying function unchanged, so stages stay plain,
    testable functions.

    Attributes:
        name: Unique stage name (the function name unless given).
        fn: The decorated function.
        inputs: Artifact names the stage consumes, in declaration order.
        outputs: Artifact names the stage produces.
        params: The function's parameters that are looked up in the param set.
        path_inputs: Inputs annotated ``pathlib.Path``: they receive the stored file's path.
        takes_ctx: Whether the function has a ``ctx`` parameter.
        cachers: Cacher name per output (outputs absent here are chosen by type).
        version: A hand-bumped version folded into the stage's code fingerprint.
        aggregate: True for ``@aggregate``: runs once per run over every param set.
        map_over: The input to map over item by item (map stages), or None.
        batch_size: Items per call for map stages (None: one item per call).
        resources: Resource hints for executors (``{"gpus": 1, "cpus": 4, "mem": "16G"}``).
        retries: How often a failed execution is retried by executors that support it.
        scripts: External script paths whose code is part of the stage's key.
        options: Further keyword options kept for extensions (``on_item_error``, ``devices``...).
        hooks: Mutable registry of attached functions (``setup`` for map stages).
    """

    name: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: tuple[Param, ...]
    path_inputs: frozenset[str]
    takes_ctx: bool
    cachers: Mapping[str, str]
    version: str | None = None
    aggregate: bool = False
    map_over: str | None = None
    batch_size: int | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 0
    scripts: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Stage {self.name} {list(self.inputs)} -> {list(self.outputs)}>"

    @property
    def module(self) -> str:
        """The module that defines the stage function."""
        return self.fn.__module__

    @property
    def qualname(self) -> str:
        """The stage function's qualified name inside its module."""
        return self.fn.__qualname__

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the params the stage takes."""
        return tuple(p.name for p in self.all_params)

    @property
    def all_params(self) -> tuple[Param, ...]:
        """The stage's params plus those of its setup function (map stages)."""
        setup = self.hooks.get("setup")
        if setup is None:
            return self.params
        own = {p.name for p in self.params}
        extra = [
            Param(name, parameter.default, parameter.annotation)
            for name, parameter in inspect.signature(setup).parameters.items()
            if name != CTX and name not in own and name not in self.inputs
        ]
        return (*self.params, *extra)

    def setup(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Attach a once-per-worker setup function to a map stage; its result is ``ctx.worker``."""
        if self.map_over is None:
            raise DefinitionError(
                f"stage {self.name!r}: .setup is only for map stages. "
                f"Fix: declare @stage(..., map_over='<input>') on {self.name}."
            )
        self.hooks["setup"] = fn
        return fn

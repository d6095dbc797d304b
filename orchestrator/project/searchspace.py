"""The ``search:`` block of a param file, read and checked (pure: Optuna is imported only to sample).

.. code-block:: yaml

    params: {epochs: 5}
    search:
      space:
        lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
        hidden: {type: int, low: 16, high: 128, step: 16}
        optimizer: [adam, sgd]            # a list: categorical
      metric: accuracy                    # from ctx.metric(...) or a metrics= output
      direction: maximize
      intermediate: val_accuracy          # what the pruner watches, by step (default: the metric itself)
      trials: 20
      sampler: tpe                        # tpe (default), random, qmc, cmaes
      pruner: median                      # median (default), percentile, hyperband, none
      seed: 0

A dimension may also be written ``{float: [low, high], log: true}``, ``{int: [low, high]}``,
``{categorical: [...]}`` or ``{choices: [...]}``; the objective ``objective: {metric: ..., direction: ...}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ParamsError
from ..keys.hashing import hash_struct

__all__ = ["Dimension", "Search", "SearchSpec", "parse_search"]

SAMPLERS = ("tpe", "random", "qmc", "cmaes")
PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "none")
_KNOWN = {"space", "metric", "direction", "objective", "trials", "sampler", "pruner", "seed", "stage", "parallel",
          "pruner_warmup_steps", "startup_trials", "intermediate"}
_ALIASES = {"uniform": "float", "loguniform": "float", "log_uniform": "float", "real": "float", "double": "float",
            "integer": "int", "choice": "categorical", "categorical": "categorical", "float": "float", "int": "int"}
_LOG_ALIASES = {"loguniform", "log_uniform"}
_DIRECTIONS = {"maximize": "maximize", "max": "maximize", "minimize": "minimize", "min": "minimize"}


@dataclass(frozen=True)
class Dimension:
    """One searched param: a float or int range (``log``, ``step``) or categorical choices."""

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        """This dimension as an Optuna distribution."""
        import optuna

        if self.kind == "categorical":
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log,
                                                        step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class SearchSpec:
    """A parsed ``search:`` block."""

    space: tuple[Dimension, ...]
    metric: str
    direction: str = "maximize"
    trials: int = 20
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    stage: str | None = None  # the stage whose metric is the objective (None: any that reports it)
    parallel: int | None = None  # trials in flight (None: what the node runs at once)
    pruner_warmup_steps: int = 0
    startup_trials: int = 5  # trials before the pruner prunes (and TPE stops sampling at random)
    intermediate: str | None = None  # the metric the pruner watches by step (None: ``metric``); same direction

    @property
    def watched(self) -> str:
        """The metric whose values by step reach the pruner."""
        return self.intermediate or self.metric

    @property
    def names(self) -> tuple[str, ...]:
        """The searched params, in the order of the block."""
        return tuple(d.name for d in self.space)

    def identity(self, template: Mapping[str, Any]) -> str:
        """What makes trials comparable: the space, objective, sampler, seed and the fixed params.

        ``trials`` and ``parallel`` are not part of it: raising ``trials`` continues the same study.
        """
        return hash_struct(["Search", [repr(d) for d in self.space], self.metric, self.direction, self.sampler,
                            self.pruner, self.seed, self.stage, self.pruner_warmup_steps, self.startup_trials,
                            self.intermediate, dict(template)])[:12]


@dataclass(frozen=True)
class Search:
    """The search of a param file: its spec and the fixed params every trial starts from.

    Attributes:
        name: The param file's name (trials are named ``NAME-7[lr=0.01,hidden=64]``).
        spec: The parsed ``search:`` block.
        values: The fixed params (``params:`` with ``--set`` overrides).
        source: The param file.
        overridden: Top-level keys ``--set`` changed.
    """

    name: str
    spec: SearchSpec
    values: Mapping[str, Any]
    source: str
    overridden: frozenset[str] = frozenset()

    @property
    def identity(self) -> str:
        """The study these trials belong to (see :meth:`SearchSpec.identity`)."""
        return self.spec.identity(self.values)


def parse_search(block: Any, where: str) -> SearchSpec:
    """Read a ``search:`` block.

    Raises:
        ParamsError: anything malformed, naming the key and the fix.
    """
    if not isinstance(block, Mapping):
        raise ParamsError(f"{where}: search: must be a mapping with space:, metric: and direction:. "
                          "Fix: search: {space: {lr: {type: float, low: 0.0001, high: 0.1, log: true}}, "
                          "metric: accuracy, direction: maximize}")
    unknown = sorted(set(block) - _KNOWN)
    if unknown:
        raise ParamsError(f"{where}: search: unknown key(s) {', '.join(unknown)}. Fix: use {', '.join(sorted(_KNOWN))}.")
    space = block.get("space")
    if not isinstance(space, Mapping) or not space:
        raise ParamsError(f"{where}: search: space: must map each searched param to its range. "
                          "Fix: space: {lr: {type: float, low: 0.0001, high: 0.1, log: true}, optimizer: [adam, sgd]}")
    objective = block.get("objective")
    metric, direction = block.get("metric"), block.get("direction", "maximize")
    if isinstance(objective, str):
        metric = objective
    elif isinstance(objective, Mapping):
        metric, direction = objective.get("metric", metric), objective.get("direction", direction)
    if not isinstance(metric, str) or not metric:
        raise ParamsError(f"{where}: search: needs the metric to optimize. Fix: metric: accuracy (a name a stage "
                          "reports with ctx.metric, or a key of a metrics= output).")
    if str(direction).lower() not in _DIRECTIONS:
        raise ParamsError(f"{where}: search: direction: {direction!r}. Fix: direction: maximize (or minimize).")
    sampler = str(block.get("sampler", "tpe")).lower()
    pruner = str(block.get("pruner", "median")).lower() if block.get("pruner", "median") is not None else "none"
    if sampler not in SAMPLERS:
        raise ParamsError(f"{where}: search: sampler: {sampler!r}. Fix: one of {', '.join(SAMPLERS)}.")
    if pruner not in PRUNERS:
        raise ParamsError(f"{where}: search: pruner: {pruner!r}. Fix: one of {', '.join(PRUNERS)}.")
    stage = block.get("stage")
    intermediate = block.get("intermediate")
    if intermediate is not None and (not isinstance(intermediate, str) or not intermediate):
        raise ParamsError(f"{where}: search: intermediate: {intermediate!r} must name a metric reported by step. "
                          "Fix: intermediate: val_loss (it must improve in the same direction as the metric).")
    return SearchSpec(
        space=tuple(_dimension(str(name), value, where) for name, value in space.items()),
        metric=metric,
        direction=_DIRECTIONS[str(direction).lower()],
        trials=_count(block, "trials", 20, where, minimum=1),
        sampler=sampler,
        pruner=pruner,
        seed=_count(block, "seed", 0, where, minimum=0),
        stage=str(stage) if stage else None,
        parallel=_count(block, "parallel", 0, where, minimum=1) if block.get("parallel") is not None else None,
        pruner_warmup_steps=_count(block, "pruner_warmup_steps", 0, where, minimum=0),
        startup_trials=_count(block, "startup_trials", 5, where, minimum=0),
        intermediate=intermediate,
    )


def _count(block: Mapping[str, Any], key: str, default: int, where: str, *, minimum: int) -> int:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParamsError(f"{where}: search: {key}: {value!r} must be a whole number of at least {minimum}. "
                          f"Fix: {key}: {max(default, minimum)}")
    return value


def _dimension(name: str, value: Any, where: str) -> Dimension:
    fix = (f"Fix: {name}: {{type: float, low: 0.001, high: 0.1, log: true}}, {{type: int, low: 1, high: 8}} "
           f"or a list of choices.")
    if isinstance(value, list):
        value = {"type": "categorical", "choices": value}
    if not isinstance(value, Mapping):
        raise ParamsError(f"{where}: search: space: {name}: {value!r} is not a range. {fix}")
    spec = dict(value)
    for short in ("float", "int", "categorical"):  # the short forms {float: [low, high]}, {categorical: [...]}
        if short in spec:
            bounds = spec.pop(short)
            spec["type"] = short
            if short == "categorical":
                spec["choices"] = bounds
            elif isinstance(bounds, list) and len(bounds) == 2:
                spec["low"], spec["high"] = bounds
            else:
                raise ParamsError(f"{where}: search: space: {name}: {short}: needs [low, high]. {fix}")
    if "values" in spec and "choices" not in spec:
        spec["choices"] = spec.pop("values")
    if "choices" in spec:
        spec.setdefault("type", "categorical")
    kind: Any = spec.get("type", spec.get("distribution"))
    kind = _ALIASES.get(str(kind).lower(), kind) if kind is not None else None
    if str(spec.get("type", spec.get("distribution", ""))).lower() in _LOG_ALIASES:
        spec.setdefault("log", True)
    if kind is None and "low" in spec and "high" in spec:
        kind = "int" if all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("low", "high")) else "float"
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ParamsError(f"{where}: search: space: {name}: choices must be a non-empty list. {fix}")
        return Dimension(name, "categorical", choices=tuple(choices))
    if kind not in ("float", "int"):
        raise ParamsError(f"{where}: search: space: {name}: type {kind!r}. {fix}")
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError):
        raise ParamsError(f"{where}: search: space: {name}: needs numbers low: and high:. {fix}") from None
    log = bool(spec.get("log", False))
    step = spec.get("step")
    if not (math.isfinite(low) and math.isfinite(high)) or low > high or (log and low <= 0):
        raise ParamsError(f"{where}: search: space: {name}: low {low:g} and high {high:g} do not make a range"
                          f"{' (log needs low > 0)' if log else ''}. {fix}")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ParamsError(f"{where}: search: space: {name}: an int range needs whole low and high. {fix}")
    if step is not None and (log or not isinstance(step, (int, float)) or step <= 0):
        raise ParamsError(f"{where}: search: space: {name}: step must be a positive number (and not with log). {fix}")
    return Dimension(name, kind, low, high, log, float(step) if step is not None else None)

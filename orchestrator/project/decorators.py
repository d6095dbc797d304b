"""The ``@stage`` and ``@aggregate`` decorators: a declaration checked and turned into a :class:`Stage`.

Declaring a stage binds its signature once, at decoration time: each parameter is an
input artifact (named in ``inputs``), the stage context (``ctx``) or a param looked up by
name in the param set. Mistakes in the declaration itself raise :class:`DefinitionError`
at the user's decorator line; mistakes that need the param sets (an unknown param) surface
when the DAG is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DefinitionError, did_you_mean
from .datadeps import data_params
from .declaration import ARTIFACT_NAME, CTX, Param, Stage
from .rules import check_function, claim_name, user_site

__all__ = ["Declaration", "aggregate", "stage"]


def stage(
    outputs: Sequence[str] | str = (),
    *,
    inputs: Sequence[str] | str = (),
    cachers: Mapping[str, str] | None = None,
    name: str | None = None,
    version: str | int | None = None,
    map_over: str | None = None,
    batch_size: int | None = None,
    resources: Mapping[str, Any] | None = None,
    retries: int = 0,
    scripts: Sequence[str] = (),
    **options: Any,
) -> Callable[[Callable[..., Any]], Stage]:
    """Declare a stage.

    Args:
        outputs: Artifact names the stage produces. A stage with one output returns the
            value; with several, a tuple in this order or a dict by name.
        inputs: Artifact names the stage consumes; each must be a parameter of the function.
        cachers: Cacher name per output (``{"model": "torch"}``); others are chosen by type.
        name: Stage name (default: the function name).
        version: Bump by hand to invalidate cached results without editing the code.
        map_over: Name of an input to map over item by item (see the map stages docs).
        batch_size: For map stages: items passed per call.
        resources: Resource hints for distributed executors.
        retries: Retries of a failed execution on executors that support it.
        scripts: External script files (relative to the project root) that belong to the
            stage's code; ``ctx.torchrun("path", ...)`` literals are found automatically.
        **options: Further options for extensions (``on_item_error``, ``devices``...).

    Returns:
        A decorator turning the function into a :class:`Stage`.
    """

    declared = Declaration(outputs, inputs, cachers, name, version, False, map_over, batch_size, resources,
                           retries, scripts, options)
    return lambda fn: _build(fn, declared)


def aggregate(
    outputs: Sequence[str] | str = (),
    *,
    inputs: Sequence[str] | str = (),
    cachers: Mapping[str, str] | None = None,
    name: str | None = None,
    version: str | int | None = None,
) -> Callable[[Callable[..., Any]], Stage]:
    """Declare an aggregate: a stage that runs once per run across all param sets.

    Each input is received as ``{param_set_name: value}`` over the run's param sets
    (an input produced by another aggregate is received as is).
    """

    declared = Declaration(outputs, inputs, cachers, name, version, is_aggregate=True)
    return lambda fn: _build(fn, declared)


def _names(value: Sequence[str] | str, what: str, where: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    for item in names:
        if not isinstance(item, str) or not ARTIFACT_NAME.match(item) or ".." in item:
            raise DefinitionError(
                f"stage {where!r}: {what} name {item!r} is not a valid artifact name. "
                "Fix: use letters, digits, '_', '-' or '.', starting with a letter "
                "(no path separators)."
            )
    if len(set(names)) != len(names):
        raise DefinitionError(f"stage {where!r}: {what} {list(names)} lists a name twice.")
    return names


@dataclass(frozen=True)
class Declaration:
    """What a ``@stage(...)`` or ``@aggregate(...)`` decorator says, before it meets its function."""

    outputs: Sequence[str] | str = ()
    inputs: Sequence[str] | str = ()
    cachers: Mapping[str, str] | None = None
    name: str | None = None
    version: str | int | None = None
    is_aggregate: bool = False
    map_over: str | None = None
    batch_size: int | None = None
    resources: Mapping[str, Any] | None = None
    retries: int = 0
    scripts: Sequence[str] = ()
    options: Mapping[str, Any] = field(default_factory=dict)


def _build(fn: Callable[..., Any], declared: Declaration) -> Stage:
    """Build the stage; a mistake is reported at the user's decorator line."""
    try:
        built = _build_stage(fn, declared)
        claim_name(built.fn, built.name)
        return built
    except DefinitionError as exc:
        raise DefinitionError(f"{user_site()}: {exc}") from None


def _build_stage(fn: Callable[..., Any], declared: Declaration) -> Stage:
    outputs, inputs, cachers, name, version = (declared.outputs, declared.inputs, declared.cachers, declared.name,
                                               declared.version)
    is_aggregate, map_over, batch_size, resources = (declared.is_aggregate, declared.map_over,
                                                     declared.batch_size, declared.resources)
    retries, scripts, options = declared.retries, declared.scripts, declared.options
    if isinstance(fn, Stage):
        raise DefinitionError(f"stage {fn.name!r} is decorated twice. Fix: keep one decorator.")
    if not callable(fn):
        raise DefinitionError(f"@stage must decorate a function, got {fn!r}.")
    stage_name = name or fn.__name__
    if name is not None and (not isinstance(name, str) or not ARTIFACT_NAME.match(name) or ".." in name):
        raise DefinitionError(
            f"{stage_name!r} is not a valid stage name (it names folders and log files in the store). "
            "Fix: use letters, digits, '_', '-' or '.', starting with a letter (no path separators)."
        )
    check_function(fn, stage_name)
    if cachers is not None and (not isinstance(cachers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in cachers.items())):
        raise DefinitionError(
            f"stage {stage_name!r}: cachers={cachers!r} must map output names to cacher names. "
            "Fix: cachers={'model': 'torch'}."
        )
    outs = _names(outputs, "output", stage_name)
    ins = _names(inputs, "input", stage_name)
    if not outs:
        raise DefinitionError(
            f"stage {stage_name!r} declares no outputs. "
            "Fix: @stage(outputs=['name']) names what the stage returns."
        )
    if set(ins) & set(outs):
        raise DefinitionError(
            f"stage {stage_name!r}: {sorted(set(ins) & set(outs))} is both input and output."
        )
    signature = inspect.signature(fn)
    parameters = signature.parameters
    for artifact in ins:
        if artifact not in parameters:
            raise DefinitionError(
                f"stage {stage_name!r}: input {artifact!r} is not a parameter of "
                f"{fn.__name__}{signature}.{did_you_mean(artifact, parameters)} "
                f"Fix: add a parameter named {artifact!r} or correct inputs=."
            )
    params: list[Param] = []
    datas = data_params(fn)
    path_inputs: set[str] = set()
    takes_ctx = False
    for pname, parameter in parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise DefinitionError(
                f"stage {stage_name!r}: *args/**kwargs are not supported. "
                "Fix: name each input and param explicitly."
            )
        if pname == CTX:
            takes_ctx = True
        elif pname in ins:
            # on a mapped input the annotation describes one item, not the artifact
            if parameter.annotation in (Path, "Path", "pathlib.Path") and pname != map_over:
                path_inputs.add(pname)
        else:
            params.append(Param(pname, parameter.default, parameter.annotation, datas.get(pname)))
    cacher_map = dict(cachers or {})
    for output in cacher_map:
        if output not in outs:
            raise DefinitionError(
                f"stage {stage_name!r}: cachers= names {output!r}, which is not an output "
                f"{list(outs)}.{did_you_mean(output, outs)}"
            )
    declared_metrics = options.get("metrics")
    if declared_metrics is not None and (isinstance(declared_metrics, str) or not set(declared_metrics) <= set(outs)):
        raise DefinitionError(
            f"stage {stage_name!r}: metrics={declared_metrics!r} must list some of its outputs {list(outs)}. "
            "Fix: metrics=['scores'] names an output whose value is a flat dict of numbers."
        )
    if map_over is not None and map_over not in ins:
        raise DefinitionError(
            f"stage {stage_name!r}: map_over={map_over!r} is not one of its inputs {list(ins)}."
            f"{did_you_mean(map_over, ins)} Fix: map_over must name an input artifact."
        )
    if map_over is not None and len(outs) != 1:
        raise DefinitionError(
            f"map stage {stage_name!r} declares {len(outs)} outputs; a map produces one sequence of "
            "per-item results. Fix: declare one output (return a dict per item for several fields)."
        )
    if options.get("cache", "auto") not in ("auto", "item", "segment"):
        raise DefinitionError(f"stage {stage_name!r}: cache={options['cache']!r} must be 'auto', 'item' or 'segment'.")
    if options.get("cache") == "segment" and batch_size is not None:
        raise DefinitionError(f"stage {stage_name!r}: cache='segment' calls the stage once per item; batch_size= "
                              "passes lists. Fix: drop one of them (batches are cached by item).")
    if "cache" in options and map_over is None:
        raise DefinitionError(f"stage {stage_name!r}: cache= is for map stages (how their items are cached). "
                              "Fix: drop cache=, or add map_over=.")
    if options.get("on_item_error", "fail") not in ("fail", "skip"):
        raise DefinitionError(f"stage {stage_name!r}: on_item_error must be 'fail' or 'skip'.")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise DefinitionError(f"stage {stage_name!r}: batch_size must be a positive int.")
    _check_return_annotation(fn, stage_name, outs)
    return Stage(
        name=stage_name,
        fn=fn,
        inputs=ins,
        outputs=outs,
        params=tuple(params),
        path_inputs=frozenset(path_inputs),
        takes_ctx=takes_ctx,
        cachers=cacher_map,
        version=None if version is None else str(version),
        aggregate=is_aggregate,
        map_over=map_over,
        batch_size=batch_size,
        resources=dict(resources or {}),
        retries=retries,
        scripts=tuple(scripts),
        options=dict(options),
    )


def _check_return_annotation(fn: Callable[..., Any], name: str, outputs: tuple[str, ...]) -> None:
    """A ``-> tuple[A, B]`` annotation must match the number of declared outputs."""
    try:
        annotation = inspect.get_annotations(fn, eval_str=True).get("return")
    except Exception:  # an annotation that does not evaluate: nothing to check
        return
    if getattr(annotation, "__origin__", None) is tuple:
        args = getattr(annotation, "__args__", ())
        if args and args[-1] is not Ellipsis and len(outputs) > 1 and len(args) != len(outputs):
            raise DefinitionError(
                f"stage {name!r} is annotated to return {len(args)} values but declares "
                f"{len(outputs)} outputs {list(outputs)}. Fix: make outputs= and the return "
                "annotation agree."
            )

"""Build the DAG: wire stages by artifact name and instantiate them per param set (pure).

Every mistake that can be seen before running is raised here, naming the stage, the
artifact or the param set and the fix: a missing or duplicate producer, a cycle, an
unknown target, a missing or mistyped param, an unknown key in a param set, an unknown
cacher.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..cachers import get_cacher
from ..errors import ParamsError, UnknownCacherError, WiringError, did_you_mean
from ..keys.fingerprint import CodeFingerprint
from ..keys.hashing import hash_struct
from ..project.binding import (
    as_lists,
    bind,
    bind_aggregate,
    check_unknown_keys,
    data_keys,
)
from ..project.declaration import Stage
from ..project.params import ParamSet

__all__ = ["ALL", "Dag", "InputRef", "Node", "build_dag"]

ALL = "*"  # the param-set label of aggregates, which run once over every set


@dataclass(frozen=True)
class InputRef:
    """One upstream value a node reads: ``artifact`` from node ``producer``.

    ``label`` is empty for a plain input; for an aggregate reading a per-set artifact it
    is the param-set name, and the node receives ``{label: value}``.
    """

    artifact: str
    producer: str
    label: str = ""


@dataclass(frozen=True)
class Node:
    """A stage instantiated for one param set (or once per run, for aggregates)."""

    id: str
    stage: Stage
    param_set: str
    params: Mapping[str, Any]
    key_params: Mapping[str, Any]
    set_values: Mapping[str, Any]
    seed: int
    inputs: tuple[InputRef, ...]
    parent: str = ""  # the param set its file extends (see ParamSet.parent)


@dataclass(frozen=True)
class Dag:
    """The nodes of a run in a topological order, with their consumers."""

    nodes: Mapping[str, Node]
    consumers: Mapping[str, tuple[str, ...]]
    targets: tuple[str, ...]
    stages: Mapping[str, Stage]

    def __len__(self) -> int:
        return len(self.nodes)

    def upstream(self, node_id: str) -> tuple[str, ...]:
        """Distinct producer nodes of ``node_id``."""
        return tuple(dict.fromkeys(ref.producer for ref in self.nodes[node_id].inputs))


def node_id(stage: str, param_set: str) -> str:
    """The id of a stage's node for a param set."""
    return f"{stage}@{param_set}"


def build_dag(
    stages: Mapping[str, Stage],
    sets: Sequence[ParamSet],
    fingerprints: Mapping[str, CodeFingerprint],
    targets: Sequence[str] | None = None,
    sources: Mapping[str, str] | None = None,
    data: Callable[[Any, str], str] | None = None,
    allow_empty: bool = False,
) -> Dag:
    """Wire ``stages`` by artifact name and instantiate the ones ``targets`` need per set.

    ``sources`` maps stages that read files outside the store (``files()``) to the digest
    of what they read; it becomes part of their key. ``data(value, pattern)`` gives the
    content digest of a param annotated as :class:`~orchestrator.project.datadeps.Data`
    (``data:<param>`` in the key parts).

    Raises:
        WiringError: missing/duplicate producer, cycle, unknown target, aggregate misuse.
        ParamsError: a missing, mistyped or unknown param.
        UnknownCacherError: a stage names a cacher that is not registered.
    """
    if not sets and not allow_empty:  # (a search that has asked no trial yet is wired all the same)
        raise ParamsError("the param files define no param set.")
    producers = _producers(stages)
    for stage in stages.values():
        for artifact in stage.inputs:
            if artifact not in producers:
                raise WiringError(
                    f"stage {stage.name!r} needs artifact {artifact!r}, but no stage produces it."
                    f"{did_you_mean(artifact, producers)} Fix: add a stage with outputs=[{artifact!r}] "
                    f"or correct {stage.name}'s inputs=."
                )
            producer = stages[producers[artifact]]
            if producer.aggregate and not stage.aggregate:
                raise WiringError(
                    f"stage {stage.name!r} reads {artifact!r}, which aggregate {producer.name!r} makes once "
                    "over all param sets. Fix: make the consumer an @aggregate too."
                )
        for output, cacher in stage.cachers.items():
            try:
                get_cacher(cacher)
            except UnknownCacherError as exc:
                raise UnknownCacherError(f"stage {stage.name!r}, output {output!r}: {exc}") from None
    order = _topological(stages, producers)
    wanted = _resolve_targets(stages, producers, targets)
    needed = _ancestors(stages, producers, [producers[t] for t in wanted])
    check_unknown_keys(stages, sets, fingerprints)

    nodes: dict[str, Node] = {}
    per_set = [s for s in order if s in needed and not stages[s].aggregate]
    for param_set in sets:
        for name in per_set:
            stage = stages[name]
            params = bind(stage, param_set)
            refs = tuple(InputRef(a, node_id(producers[a], param_set.name)) for a in stage.inputs)
            nid = node_id(name, param_set.name)
            if sources and name in sources:
                params = {**params, "data:files": sources[name]}  # (the plan names the files that changed)
            nodes[nid] = replace(_node(nid, stage, param_set.name, params, param_set.values, refs, fingerprints[name],
                                       data_keys(stage, params, data)), parent=param_set.parent)
    for name in (s for s in order if s in needed and stages[s].aggregate):
        stage = stages[name]
        refs_list: list[InputRef] = []
        for artifact in stage.inputs:
            producer = stages[producers[artifact]]
            if producer.aggregate:
                refs_list.append(InputRef(artifact, node_id(producer.name, ALL)))
            else:
                refs_list += [InputRef(artifact, node_id(producer.name, s.name), s.name) for s in sets]
        params = bind_aggregate(stage, sets)
        all_values = {s.name: s.values for s in sets}
        nid = node_id(name, ALL)
        nodes[nid] = _node(nid, stage, ALL, params, all_values, tuple(refs_list), fingerprints[name],
                           data_keys(stage, params, data))
    consumers: dict[str, list[str]] = {nid: [] for nid in nodes}
    for nid, node in nodes.items():
        for upstream in dict.fromkeys(ref.producer for ref in node.inputs):
            consumers[upstream].append(nid)
    return Dag(nodes, {k: tuple(v) for k, v in consumers.items()}, tuple(wanted), dict(stages))


def _node(
    nid: str,
    stage: Stage,
    param_set: str,
    params: dict[str, Any],
    set_values: Mapping[str, Any],
    refs: tuple[InputRef, ...],
    fingerprint: CodeFingerprint,
    data_keys: Mapping[str, str],
) -> Node:
    # a default that is a function or class is code: its fingerprint covers it (the stage's defaults)
    key_params = {k: (["code", f"{getattr(v, '__module__', '')}:{getattr(v, '__qualname__', '')}"]
                      if callable(v) else as_lists(v)) for k, v in params.items()}
    key_params.update(data_keys)
    base_seed = set_values.get("seed", 0) if param_set != ALL else 0
    if "params" in fingerprint.ctx_uses:
        key_params["ctx.params"] = set_values
    if "seed" in fingerprint.ctx_uses:
        key_params["ctx.seed"] = base_seed
    seed = int(hash_struct(["Seed", stage.name, base_seed])[:8], 16) & 0x7FFFFFFF
    return Node(nid, stage, param_set, params, key_params, set_values, seed, refs)


def _producers(stages: Mapping[str, Stage]) -> dict[str, str]:
    producers: dict[str, str] = {}
    for stage in stages.values():
        for artifact in stage.outputs:
            if artifact in producers:
                raise WiringError(
                    f"artifact {artifact!r} is produced by two stages, {producers[artifact]!r} and "
                    f"{stage.name!r}. Fix: rename the output of one of them."
                )
            producers[artifact] = stage.name
    return producers


def _topological(stages: Mapping[str, Stage], producers: Mapping[str, str]) -> list[str]:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    order: list[str] = []
    for root in stages:
        if state.get(root) == 2:
            continue
        stack: list[tuple[str, list[str]]] = [(root, [root])]
        state[root] = 1
        while stack:
            name, path = stack[-1]
            upstream = [producers[a] for a in stages[name].inputs]
            pending = [u for u in upstream if state.get(u) != 2]
            for up in pending:
                if state.get(up) == 1:
                    cycle = path[path.index(up):] + [up]
                    raise WiringError(
                        f"stages form a cycle: {' -> '.join(cycle)}. Fix: one of these stages must not "
                        "consume, directly or through others, what it produces."
                    )
            if pending:
                up = pending[0]
                state[up] = 1
                stack.append((up, path + [up]))
                continue
            stack.pop()
            state[name] = 2
            order.append(name)
    return order


def _resolve_targets(
    stages: Mapping[str, Stage], producers: Mapping[str, str], targets: Sequence[str] | None
) -> list[str]:
    if targets:
        for target in targets:
            if target not in producers:
                hint = ""
                if target in stages:
                    hint = f" {target!r} is a stage; its outputs are {list(stages[target].outputs)}."
                raise WiringError(
                    f"target {target!r} is not an artifact any stage produces.{did_you_mean(target, producers)}"
                    f"{hint} Fix: --target one of {', '.join(sorted(producers))}."
                )
        return list(dict.fromkeys(targets))
    consumed = {a for s in stages.values() for a in s.inputs}
    return [a for a in producers if a not in consumed]


def _ancestors(stages: Mapping[str, Stage], producers: Mapping[str, str], roots: Sequence[str]) -> set[str]:
    needed: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack += [producers[a] for a in stages[name].inputs]
    return needed

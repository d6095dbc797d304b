"""Plans: for every node, CACHED, RUN (with the reasons) or MAY RUN.

Deciding a node needs only its key parts and what the store holds under that key, so
the same :func:`decide` serves the dry-run plan (computed up front) and the run itself
(computed as upstream results arrive, which is what makes early cutoff work).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Protocol

from ..keys.cachekey import KeyParts, changes, code_label, input_label, key_parts
from ..keys.fingerprint import CodeFingerprint
from ..project.datadeps import describe_change
from ..store.base import KeyRecord
from .dag import Dag, Node

__all__ = ["Action", "Decision", "Plan", "RecordSource", "decide", "make_plan", "recheck"]


class Action(str, Enum):
    """What a run will do with a node."""

    CACHED = "CACHED"  # a stored result matches the node's key
    RUN = "RUN"  # no stored result for the key, or the stage was forced
    MAY_RUN = "MAY RUN"  # an upstream node runs; if its outputs come out unchanged, this one is spared


class RecordSource(Protocol):
    """What deciding needs from a store."""

    def get_record(self, key: str) -> KeyRecord | None: ...

    def has_object(self, object_hash: str) -> bool: ...

    def get_ref(self, stage: str, param_set: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Decision:
    """The decision for one node."""

    node: str
    stage: str
    param_set: str
    action: Action
    key: str | None = None
    parts: KeyParts | None = None
    reasons: tuple[str, ...] = ()
    record: KeyRecord | None = None


@dataclass(frozen=True)
class Plan:
    """Decisions for every node of a DAG, in topological order."""

    decisions: Mapping[str, Decision]

    def count(self, action: Action) -> int:
        """How many nodes get ``action``."""
        return sum(1 for d in self.decisions.values() if d.action is action)


def input_hashes(node: Node, outputs: Mapping[str, Mapping[str, str]]) -> dict[str, str] | None:
    """The content hash of each input of ``node`` given the producers' output hashes, or None."""
    result = {}
    for ref in node.inputs:
        produced = outputs.get(ref.producer)
        if produced is None:
            return None
        result[input_label(ref.artifact, ref.label)] = produced[ref.artifact]
    return result


def decide(
    node: Node,
    fingerprint: CodeFingerprint,
    hashes: Mapping[str, str],
    store: RecordSource,
    *,
    forced: bool = False,
) -> Decision:
    """Decide CACHED or RUN for a node whose input hashes are known."""
    parts = key_parts(node.stage, node.key_params, fingerprint, hashes)
    key = parts.digest
    base = dict(node=node.id, stage=node.stage.name, param_set=node.param_set, key=key, parts=parts)
    if forced:
        return Decision(action=Action.RUN, reasons=("forced",), **base)  # type: ignore[arg-type]
    record = store.get_record(key)
    if record is not None:
        missing = _missing_outputs(record, store)
        if not missing:
            return Decision(action=Action.CACHED, record=record, **base)  # type: ignore[arg-type]
        reasons: Iterable[str] = [f"cached object of {name} is missing" for name in missing]
    else:
        previous = store.get_ref(node.stage.name, node.param_set)
        describe = (lambda a, b: describe_change(store, a, b))
        reasons = changes(previous, parts, code_label(node.stage), describe)
        if previous is None and node.parent and node.parent != node.param_set:
            inherited = store.get_ref(node.stage.name, node.parent)  # a new set: what differs from its parent's
            relative = changes(inherited, parts, code_label(node.stage), describe) if inherited is not None else []
            if relative and relative != ["no cached result"]:
                reasons = [f"no cached result; vs {node.parent}: {r}" for r in relative]
    return Decision(action=Action.RUN, reasons=tuple(reasons), **base)  # type: ignore[arg-type]


def recheck(decision: Decision, store: RecordSource) -> Decision:
    """``decision`` again, for the same key: CACHED if its result has been stored since."""
    if decision.key is None:
        return decision
    record = store.get_record(decision.key)
    if record is None or _missing_outputs(record, store):
        return decision
    return replace(decision, action=Action.CACHED, record=record, reasons=())


def _missing_outputs(record: KeyRecord, store: RecordSource) -> list[str]:
    """The outputs of a stored record whose objects are gone from the store (inline ones cannot be)."""
    return [a.name for a in record.outputs.values() if a.data is None and not store.has_object(a.object)]


def make_plan(
    dag: Dag,
    fingerprints: Mapping[str, CodeFingerprint],
    store: RecordSource,
    forced: Iterable[str] = (),
) -> Plan:
    """Decide every node up front, as a dry run would."""
    forced_stages = set(forced)
    outputs: dict[str, dict[str, str]] = {}
    decisions: dict[str, Decision] = {}
    for node in dag.nodes.values():
        hashes = input_hashes(node, outputs)
        if hashes is None:
            stale = [p for p in dag.upstream(node.id) if decisions[p].action is not Action.CACHED]
            label = ", ".join(sorted({decisions[p].stage for p in stale}))
            decisions[node.id] = Decision(
                node.id, node.stage.name, node.param_set, Action.MAY_RUN, reasons=(f"upstream {label} runs",)
            )
            continue
        decision = decide(
            node, fingerprints[node.stage.name], hashes, store, forced=node.stage.name in forced_stages
        )
        decisions[node.id] = decision
        if decision.action is Action.CACHED and decision.record is not None:
            outputs[node.id] = {name: a.hash for name, a in decision.record.outputs.items()}
    return Plan(decisions)

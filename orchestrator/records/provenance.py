"""Answers from the run records: why a stage ran, where an artifact came from, what changed between runs.

``explain`` compares a stage's key parts with those of its last execution that stored a
result and says, in the words of :func:`orchestrator.keys.cachekey.changes`, what differs.
``lineage`` follows key parts back from an artifact hash: the key that produced it, that
key's params and input hashes, and so on to the stages that read no artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import RecordNotFound, did_you_mean
from ..keys.cachekey import KeyParts, changes
from ..keys.fingerprint import WHOLE_MODULE
from .history import History
from .values import ExecutionRecord, RunRecord, final_metrics

__all__ = ["Explanation", "Lineage", "explain", "find_artifact", "lineage", "run_diff"]

MAX_DEPTH = 200


@dataclass(frozen=True)
class Explanation:
    """Why one stage execution ran, was cached, failed or was skipped."""

    stage: str
    param_set: str
    run_id: str
    status: str
    key: str | None
    summary: str
    changes: tuple[str, ...] = ()
    recorded_reasons: tuple[str, ...] = ()
    previous_run: str | None = None
    previous_set: str | None = None
    stored_by: str | None = None
    #: code parts where a whole module stood in for a value the fingerprint could not hash
    conservative: tuple[str, ...] = ()
    #: files the stage read that its key does not cover
    undeclared_reads: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def _parts(e: ExecutionRecord) -> KeyParts | None:
    if not e.parts:
        return None
    p = e.parts
    return KeyParts(e.stage, p.get("code", {}), p.get("params", {}), p.get("inputs", {}), p.get("cachers", {}))


def _explain_one(history: History, run: RunRecord, e: ExecutionRecord) -> Explanation:
    # compared with the execution that computed the result before this one, not one that only reused it
    previous = next(history.history_of(e.stage, e.param_set, run.started, computed=True), None)
    compared_set = None
    if previous is None:
        previous = next(history.history_of(e.stage, None, run.started, computed=True), None)
        compared_set = previous.param_set if previous is not None else None
    parts = _parts(e)
    diff: list[str] = []
    if previous is not None and parts is not None and previous.parts and previous.key != e.key:
        diff = [c for c in changes(previous.parts, parts, e.code_label) if c != "no cached result"]
    against = ""
    if previous is not None:
        against = f" (compared with run {previous.run_id}" + (f", param set {compared_set}" if compared_set else "") + ")"
    conservative = tuple(label for label in (e.parts or {}).get("code", {}) if WHOLE_MODULE in label)
    base = dict(stage=e.stage, param_set=e.param_set, run_id=run.id, status=e.status, key=e.key,
                changes=tuple(diff), recorded_reasons=e.reasons, conservative=conservative,
                undeclared_reads=tuple((e.extras or {}).get("undeclared_reads", ())),
                previous_run=previous.run_id if previous else None, previous_set=compared_set)
    if e.status == "cached":
        origin = history.first_ran(e.key) if e.key else None
        stored_by = origin.run_id if origin is not None else None
        where = f"stored by run {stored_by}" if stored_by else "stored before the run records began"
        summary = f"cached: its key {(e.key or '')[:12]} matches a result {where}"
        if diff:
            summary += "; it differs from the last execution" + against + ", but that key was stored earlier"
        return Explanation(summary=summary, stored_by=stored_by, **base)  # type: ignore[arg-type]
    if e.status == "skipped":
        return Explanation(summary="skipped: " + ("; ".join(e.reasons) or "the run stopped first"), **base)  # type: ignore[arg-type]
    verb = {"ran": "ran", "failed": "ran and failed", "interrupted": "was interrupted while running",
            "running": "is running"}.get(e.status, e.status)
    if "forced" in e.reasons:
        why = "it was forced (--force)"
    elif diff:
        why = "; ".join(diff) + against
    elif previous is None:
        why = "no earlier execution of this stage is recorded"
    elif previous.key == e.key:
        why = "; ".join(e.reasons) or "its stored result was no longer usable"
    else:
        why = "; ".join(e.reasons) or "no cached result for its key"
    return Explanation(summary=f"{verb}: {why}", **base)  # type: ignore[arg-type]


def explain(history: History, stage: str, *, param_set: str | None = None, run: str | None = None) -> list[Explanation]:
    """Why ``stage`` ran or was cached in ``run`` (default: the last run that has it), per param set."""
    record = history.run(run) if run else history.last_run_with(stage)
    return [_explain_one(history, record, e) for e in history.stage_executions(record, stage, param_set)]


@dataclass(frozen=True)
class Lineage:
    """An artifact and, recursively, what produced it."""

    artifact: str
    hash: str
    size: int = 0
    cacher: str = ""
    stage: str = ""
    param_set: str = ""
    key: str = ""
    run_id: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[tuple[str, Lineage], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready nested copy."""
        data = {k: v for k, v in asdict(self).items() if k != "inputs"}
        data["inputs"] = {label: sub.to_dict() for label, sub in self.inputs}
        return data


def _build(history: History, digest: str, key: str | None, memo: dict[str, Lineage], depth: int) -> Lineage:
    if digest in memo:
        return memo[digest]
    found = history.producers(digest)
    exact = [(k, a) for k, a in found if a.hash == digest]
    if key is None and exact:
        key = exact[0][0]
    info = next((a for k, a in exact if k == key), exact[0][1] if exact else None)
    if key is None or info is None:
        node = Lineage(artifact="?", hash=digest)
        memo[digest] = node
        return node
    parts = history.key_parts(key) or {}
    origin = history.first_ran(key)
    inputs: list[tuple[str, Lineage]] = []
    if depth < MAX_DEPTH:
        inputs = [(label, _build(history, h, None, memo, depth + 1)) for label, h in sorted(parts.get("inputs", {}).items())]
    node = Lineage(info.name, digest, info.size, info.cacher, str(parts.get("stage", "")), str(parts.get("param_set", "")),
                   key, origin.run_id if origin else "", parts.get("params", {}), tuple(inputs))
    memo[digest] = node
    return node


def lineage(history: History, ref: str, *, run: str | None = None, param_set: str | None = None) -> list[Lineage]:
    """The lineage of an artifact named ``ref`` (in ``run``, default the last run with it) or with hash prefix ``ref``."""
    names = history.artifact_names() if history.exists else []
    if ref in names:
        record = history.run(run) if run else _last_run_with_artifact(history, ref)
        chosen = [e for e in history.executions(record, param_set=param_set, parts=False) if ref in e.outputs]
        if not chosen:
            raise RecordNotFound(f"run {record.id} has no artifact {ref!r}"
                                 + (f" for param set {param_set!r}" if param_set else "") + ". Fix: pick another --run.")
        memo: dict[str, Lineage] = {}
        return [_build(history, e.outputs[ref].hash, e.key, memo, 0) for e in chosen]
    if len(ref) < 4 or any(c not in "0123456789abcdef" for c in ref.lower()):
        raise RecordNotFound(f"no artifact named {ref!r} in the run records.{did_you_mean(ref, names)} "
                             "Fix: pass an artifact name or at least 4 characters of its hash.")
    digests = sorted({a.hash for _, a in history.producers(ref.lower())})
    if not digests:
        raise RecordNotFound(f"no recorded artifact has a hash starting with {ref!r}. "
                             "Fix: copy the hash from experiment show RUN or experiment cache ls.")
    if len(digests) > 1:
        raise RecordNotFound(f"hash prefix {ref!r} matches {len(digests)} artifacts. Fix: type more of the hash.")
    return [_build(history, digests[0], None, {}, 0)]


def find_artifact(history: History, name: str, *, run: str | None = None,
                  param_set: str | None = None) -> tuple[RunRecord, ExecutionRecord]:
    """The one execution that stored artifact ``name`` (in ``run``, default the last run with it).

    Raises:
        RecordNotFound: no such artifact, or several param sets have it and none was chosen (they are listed).
    """
    names = history.artifact_names() if history.exists else []
    if name not in names:
        raise RecordNotFound(f"no artifact named {name!r} in the run records.{did_you_mean(name, names)} "
                             "Fix: run the experiment that produces it, or pick a name from experiment show RUN.")
    record = history.run(run) if run else _last_run_with_artifact(history, name)
    found = [e for e in history.executions(record, parts=False) if name in e.outputs and e.key]
    chosen = [e for e in found if param_set is None or e.param_set == param_set]
    if len(chosen) == 1:
        return record, chosen[0]
    sets = sorted(e.param_set for e in found)
    if not chosen:
        raise RecordNotFound(f"run {record.id} has no artifact {name!r} for param set {param_set!r}."
                             f"{did_you_mean(param_set or '', sets)} Fix: --set one of {', '.join(sets)}.")
    raise RecordNotFound(f"run {record.id} has artifact {name!r} for {len(sets)} param sets: {', '.join(sets)}. "
                         "Fix: --set NAME picks one.")


def _last_run_with_artifact(history: History, name: str) -> RunRecord:
    for record in history.runs(limit=50):
        if any(name in e.outputs for e in history.executions(record, parts=False)):
            return record
    raise RecordNotFound(f"no recent run produced {name!r}. Fix: pass --run RUN.")


def _stage_code(executions: list[ExecutionRecord]) -> dict[str, tuple[dict[str, str], str]]:
    code: dict[str, tuple[dict[str, str], str]] = {}
    for e in executions:
        if e.parts and e.stage not in code:
            code[e.stage] = (dict(e.parts.get("code", {})), e.code_label)
    return code


def _pair_sets(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Sets of run A matched with sets of run B: same name first, then closest params (fewest differences)."""
    pairs = [(name, name) for name in a if name in b]
    left = [name for name in a if name not in b]
    right = [name for name in b if name not in a]

    def distance(x: Mapping[str, Any], y: Mapping[str, Any]) -> int:
        return sum(1 for key in set(x) | set(y) if repr(x.get(key, _ABSENT)) != repr(y.get(key, _ABSENT)))

    candidates = sorted((distance(a[x], b[y]), x, y) for x in left for y in right)
    used_a: set[str] = set()
    used_b: set[str] = set()
    for _, x, y in candidates:
        if x not in used_a and y not in used_b:
            pairs.append((x, y))
            used_a.add(x)
            used_b.add(y)
    return pairs


_ABSENT = object()


def _diff_maps(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    missing = "(absent)"
    return [{"name": k, "a": a.get(k, missing), "b": b.get(k, missing)}
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]


def run_diff(history: History, ref_a: str, ref_b: str) -> dict[str, Any]:
    """What differs between two runs: params, code, packages, artifact hashes and metrics (JSON-ready)."""
    from .report import flatten

    a, b = history.run(ref_a), history.run(ref_b)
    ea, eb = history.executions(a), history.executions(b)
    sets_a, sets_b = a.param_sets, b.param_sets
    flat_a = {name: flatten(values) for name, values in sets_a.items()}
    flat_b = {name: flatten(values) for name, values in sets_b.items()}
    pairs = _pair_sets(flat_a, flat_b)  # by name, else by the closest params (runs of two param files)
    label_a = {sa: sa if sa == sb else f"{sa} -> {sb}" for sa, sb in pairs}
    label_b = {sb: label_a[sa] for sa, sb in pairs}
    label_a["*"] = label_b["*"] = "*"  # aggregates
    params = [{"set": label_a[sa], **row} for sa, sb in pairs for row in _diff_maps(flat_a[sa], flat_b[sb])]
    code_a, code_b = _stage_code(ea), _stage_code(eb)
    code = []
    for stage in sorted(set(code_a) & set(code_b)):
        (old, _), (new, label) = code_a[stage], code_b[stage]
        words = [w for w in changes({"code": old}, KeyParts(stage, new, {}, {}, {}), label) if w != "no cached result"]
        if words:
            code.append({"stage": stage, "changes": words})
    env_a = {"python": a.environment.get("python"), **a.environment.get("packages", {}),
             "git commit": a.git.get("commit", ""), "git dirty": a.git.get("dirty", False)}
    env_b = {"python": b.environment.get("python"), **b.environment.get("packages", {}),
             "git commit": b.git.get("commit", ""), "git dirty": b.git.get("dirty", False)}
    # sets without a counterpart are listed under "sets"; their artifacts and metrics are not a change
    hashes_a = {f"{e.stage} [{label_a[e.param_set]}] {n}": o.hash for e in ea if e.param_set in label_a
                for n, o in e.outputs.items()}
    hashes_b = {f"{e.stage} [{label_b[e.param_set]}] {n}": o.hash for e in eb if e.param_set in label_b
                for n, o in e.outputs.items()}
    metrics_a = {f"{e.stage} [{label_a[e.param_set]}] {n}": v for e in ea if e.param_set in label_a
                 for n, v in final_metrics(e.extras).items()}
    metrics_b = {f"{e.stage} [{label_b[e.param_set]}] {n}": v for e in eb if e.param_set in label_b
                 for n, v in final_metrics(e.extras).items()}
    return {
        "a": {"id": a.id, "title": a.title, "status": a.status, "started": a.started},
        "b": {"id": b.id, "title": b.title, "status": b.status, "started": b.started},
        "sets": {"only_a": sorted(set(sets_a) - {sa for sa, _ in pairs}),
                 "only_b": sorted(set(sets_b) - {sb for _, sb in pairs}),
                 "paired": [[sa, sb] for sa, sb in pairs if sa != sb]},
        "params": params,
        "code": code,
        "stages": {"only_a": sorted({e.stage for e in ea} - {e.stage for e in eb}),
                   "only_b": sorted({e.stage for e in eb} - {e.stage for e in ea})},
        "environment": _diff_maps(env_a, env_b),
        "artifacts": _diff_maps(hashes_a, hashes_b),
        "metrics": _diff_maps(metrics_a, metrics_b),
    }

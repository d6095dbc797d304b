"""Cache keys: a Merkle hash over what a stage's result depends on (pure).

A key covers the stage's code fingerprint (its parts), only the params it takes, the
content hashes of its inputs and the names and versions of its declared cachers, salted
with :data:`~orchestrator.keys.hashing.SCHEME`. The parts are kept next to the digest, so a
plan can say in words what changed since the last execution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..cachers import get_cacher
from ..project.declaration import Stage
from .fingerprint import WHOLE_MODULE, CodeFingerprint
from .hashing import SCHEME, Encoded, hash_struct

__all__ = ["KeyParts", "changes", "code_label", "input_label", "key_parts", "map_key"]


@dataclass(frozen=True)
class KeyParts:
    """Everything a stage's cache key is made of."""

    stage: str
    code: Mapping[str, str]
    params: Mapping[str, Any]
    inputs: Mapping[str, str]
    cachers: Mapping[str, str]

    @property
    def digest(self) -> str:
        """The key: a tagged hash of the parts."""
        return hash_struct(
            [
                "StageKey",
                SCHEME,
                self.stage,
                _code_items(tuple(sorted(self.code.items()))),
                dict(self.params),
                sorted(self.inputs.items()),
                sorted(self.cachers.items()),
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (stored in key records and refs); nested param values are shared, not copied."""
        return {"stage": self.stage, "code": dict(self.code), "params": dict(self.params),
                "inputs": dict(self.inputs), "cachers": dict(self.cachers)}


def map_key(parts: KeyParts, mapped: str) -> str:
    """The key of a map stage's items: its key without the mapped input.

    Items are cached under (map key, item content hash), so adding items to the mapped
    input, or reordering it, leaves every existing item's result reusable.
    """
    return hash_struct(
        [
            "MapKey",
            SCHEME,
            parts.stage,
            _code_items(tuple(sorted(parts.code.items()))),
            dict(parts.params),
            sorted((k, v) for k, v in parts.inputs.items() if k != mapped),
            sorted(parts.cachers.items()),
        ]
    )


@lru_cache(maxsize=4096)
def _code_items(items: tuple[tuple[str, str], ...]) -> Encoded:
    """The code parts as the list ``sorted(code.items())``, encoded once per stage, not once per node."""
    return Encoded(list(items))


def input_label(artifact: str, label: str) -> str:
    """How an input appears in key parts (``metrics@baseline`` for aggregate inputs)."""
    return f"{artifact}@{label}" if label else artifact


def key_parts(stage: Stage, key_params: Mapping[str, Any], fingerprint: CodeFingerprint,
              input_hashes: Mapping[str, str]) -> KeyParts:
    """The key parts of one instance of ``stage``: the params its key sees, its code, its inputs' content hashes."""
    cachers = {
        output: f"{name}@{get_cacher(name).version}" for output, name in stage.cachers.items()
    }
    return KeyParts(
        stage=stage.name,
        code=dict(fingerprint.parts),
        params=dict(key_params),
        inputs=dict(input_hashes),
        cachers=cachers,
    )


def code_label(stage: Stage) -> str:
    """The code-part label of the stage function itself."""
    fn = stage.fn
    return f"{fn.__module__}:{fn.__qualname__}"


def changes(old: Mapping[str, Any] | None, new: KeyParts, own_label: str = "",
            describe_data: Callable[[str, str], str] | None = None) -> list[str]:
    """Describe in words how ``new`` differs from the parts of the previous execution.

    ``describe_data(old_digest, new_digest)`` says how a param's data changed
    (``5 files added, 1 changed``); without it, "changed".
    """
    if old is None:
        return ["no cached result"]
    reasons: list[str] = []
    old_code: Mapping[str, str] = old.get("code", {})
    for label in sorted(set(old_code) | set(new.code)):
        if old_code.get(label) == new.code.get(label):
            continue
        name = label if WHOLE_MODULE in label else label.split(":", 1)[-1]
        if label == "version":
            reasons.append("version bumped")
        elif label.startswith("script:"):
            reasons.append(f"script changed: {label[len('script:'):]}")
        elif label == own_label:
            reasons.append(f"code changed: {new.stage}")
        elif label not in old_code:
            reasons.append(f"code added: {name}")
        elif label not in new.code:
            reasons.append(f"code no longer used: {name}")
        else:
            reasons.append(f"code changed: {name}")
    old_params: Mapping[str, Any] = old.get("params", {})
    for name in sorted(set(old_params) | set(new.params)):
        if name.startswith("data:"):
            before, after = old_params.get(name), new.params.get(name)
            if before is not None and after is not None and before != after:
                param = name[len("data:"):]
                what = describe_data(str(before), str(after)) if describe_data else "changed"
                shown = f" ({_short(new.params[param])})" if param in new.params else ""  # (files(): no such param)
                reasons.append(f"data {param}{shown}: {what}")
            continue
        if name not in old_params:
            reasons.append(f"param {name} is new: {_short(new.params[name])}")
        elif name not in new.params:
            reasons.append(f"param {name} no longer used")
        else:
            reasons += _param_changes(name, old_params[name], new.params[name])
    old_inputs: Mapping[str, str] = old.get("inputs", {})
    for name in sorted(set(old_inputs) | set(new.inputs)):
        if old_inputs.get(name) != new.inputs.get(name):
            reasons.append(f"input {name} changed")
    if dict(old.get("cachers", {})) != dict(new.cachers):
        reasons.append("cachers changed")
    return reasons or ["no cached result"]


def _param_changes(path: str, old: Any, new: Any) -> list[str]:
    """How a param changed, down to the dotted path inside nested mappings (``model.dropout 0.1 -> 0.2``)."""
    if _canonical(old) == _canonical(new):
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            inner = f"{path}.{key}"
            if key not in old:
                found.append(f"param {inner} is new: {_short(new[key])}")
            elif key not in new:
                found.append(f"param {inner} removed")
            else:
                found += _param_changes(inner, old[key], new[key])
        return found
    return [f"param {path} {_short(old)} -> {_short(new)}"]


def _canonical(value: Any) -> Any:
    """Params as the key sees them: a tuple is the list YAML gives, a stored JSON copy equals the value."""
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

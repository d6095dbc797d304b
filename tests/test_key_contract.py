"""The key contract: golden values, version=, and planner decisions tested directly.

Changing a golden value invalidates every user's cache: bump ``SCHEME`` instead and update
the values on purpose, saying so in the changelog.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from orchestrator import stage
from orchestrator.engine.dag import build_dag
from orchestrator.engine.planner import Action, decide
from orchestrator.keys.cachekey import KeyParts, changes, map_key
from orchestrator.keys.fingerprint import Fingerprinter
from orchestrator.keys.hashing import SCHEME
from orchestrator.project.params import ParamSet
from orchestrator.store.local import LocalStore
from orchestrator.store.records import ArtifactRecord, KeyRecord, artifact_hash

PARTS = KeyParts(
    stage="fit",
    code={"stages.model:fit": "0" * 32, "stages.helpers:sigmoid": "1" * 32},
    params={"lr": 0.1, "ctx.seed": 0},
    inputs={"train": "2" * 32, "items": "3" * 32},
    cachers={"model": "torch@1"},
)


def test_golden_stage_key_map_key_and_artifact_hash():
    assert SCHEME == "orchestrator-key-v2"
    assert PARTS.digest == "55b4155f3514741f602f2ddd5dcf9ec2"
    assert map_key(PARTS, "items") == "114e0d5a06c254ce3c608d22ac9b086f"
    assert artifact_hash("pickle", "1", "4" * 32) == "8009e65c0459fa8415ee5a23571ef9fe"


def test_every_key_part_moves_the_key():
    variants = [
        KeyParts("other", PARTS.code, PARTS.params, PARTS.inputs, PARTS.cachers),
        KeyParts(PARTS.stage, {**PARTS.code, "stages.helpers:sigmoid": "5" * 32}, PARTS.params, PARTS.inputs,
                 PARTS.cachers),
        KeyParts(PARTS.stage, PARTS.code, {**PARTS.params, "lr": 0.2}, PARTS.inputs, PARTS.cachers),
        KeyParts(PARTS.stage, PARTS.code, PARTS.params, {**PARTS.inputs, "train": "6" * 32}, PARTS.cachers),
        KeyParts(PARTS.stage, PARTS.code, PARTS.params, PARTS.inputs, {"model": "torch@2"}),
    ]
    assert len({PARTS.digest, *(v.digest for v in variants)}) == len(variants) + 1
    # the mapped input is not in the map key; every other input is
    assert map_key(variants[3], "items") != map_key(PARTS, "items")
    moved = KeyParts(PARTS.stage, PARTS.code, PARTS.params, {**PARTS.inputs, "items": "7" * 32}, PARTS.cachers)
    assert map_key(moved, "items") == map_key(PARTS, "items")


def _fit(x):
    return x


def test_a_computed_version_moves_the_fingerprint_without_a_source_edit():
    fingerprinter = Fingerprinter(Path(__file__).parent)
    one = fingerprinter.stage(_fit, version="2026-01")
    two = fingerprinter.stage(_fit, version="2026-02")
    plain = fingerprinter.stage(_fit)
    assert len({one.digest, two.digest, plain.digest}) == 3
    assert changes({"code": dict(one.parts)}, KeyParts("fit", two.parts, {}, {}, {})) == ["version bumped"]


def test_a_version_read_from_a_file_reruns_the_stage_when_only_the_file_changes(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": '''
            from pathlib import Path

            from orchestrator import stage

            VERSION = (Path(__file__).parent / "version.txt").read_text().strip()


            @stage(outputs=["out"], version=VERSION)
            def produce():
                return 1
        ''',
        "stages/version.txt": "1\n",
        "params/p.yaml": "params: {}\n",
    })
    proj.run_json("p")
    (proj.root / "stages" / "version.txt").write_text("2\n")
    assert "version bumped" in proj.experiment("plan", "p").stdout
    assert proj.run_json("p")["nodes"][0]["status"] == "ran"


# -- changes(): the plan's reasons, from the parts alone --------------------------------------
def test_changes_name_each_kind_of_difference():
    old = PARTS.to_dict()
    new = KeyParts(
        "fit",
        {"stages.model:fit": "9" * 32, "stages.extra:added": "8" * 32, "version": "1" * 32,
         "script:external/train.py": "2" * 32},
        {"lr": 0.3, "ctx.seed": 0, "epochs": 2},
        {"train": "7" * 32, "items": "3" * 32},
        {"model": "torch@2"},
    )
    old["code"] = {**old["code"], "version": "0" * 32, "script:external/train.py": "1" * 32}
    reasons = changes(old, new, "stages.model:fit")
    assert reasons == [  # in the order of the labels
        "script changed: external/train.py",
        "code added: added",
        "code no longer used: sigmoid",
        "code changed: fit",
        "version bumped",
        "param epochs is new: 2",
        "param lr 0.1 -> 0.3",
        "input train changed",
        "cachers changed",
    ]
    assert changes(None, new) == ["no cached result"]
    whole = "stages.config (whole module: OP could not be hashed: lock)"
    assert changes({"code": {whole: "0" * 32}}, KeyParts("fit", {whole: "1" * 32}, {}, {}, {})) == [
        f"code changed: {whole}"]


# -- decide(): CACHED, RUN with reasons, forced, against a real store -------------------------
@stage(outputs=["raw"])
def load_raw(n: int = 3):
    return list(range(n))


def test_decide_against_a_real_store(tmp_path):
    fingerprints = {"load_raw": Fingerprinter(Path(__file__).parent).stage(load_raw.fn)}
    dag = build_dag({"load_raw": load_raw}, [ParamSet("p", {"n": 3})], fingerprints, None)
    node = dag.nodes["load_raw@p"]
    store = LocalStore(tmp_path / "cache")
    store.prepare()
    first = decide(node, fingerprints["load_raw"], {}, store)
    assert first.action is Action.RUN and first.reasons == ("no cached result",)
    output = ArtifactRecord(name="raw", kind="file", size=3, cacher="json", cacher_version="1",
                            object="a" * 32, hash="b" * 32, data="WzBd")
    store.put_record(KeyRecord(first.key, "load_raw", "p", first.parts.to_dict(), {"raw": output}, time.time(), 0.1))
    store.put_refs({("load_raw", "p"): first.parts.to_dict()})
    cached = decide(node, fingerprints["load_raw"], {}, store)
    assert cached.action is Action.CACHED and cached.key == first.key
    assert decide(node, fingerprints["load_raw"], {}, store, forced=True).reasons == ("forced",)
    other = build_dag({"load_raw": load_raw}, [ParamSet("p", {"n": 4})], fingerprints, None).nodes["load_raw@p"]
    moved = decide(other, fingerprints["load_raw"], {}, store)
    assert moved.action is Action.RUN and moved.reasons == ("param n 3 -> 4",)


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="syntax-tree dumps differ between Python versions")
def test_golden_code_fingerprint():
    fp = Fingerprinter(Path(__file__).parent).stage(_fit)
    assert fp.parts == {f"{__name__}:_fit": "c13b31faba965cd4dc56dc7cac3068e0"}


EDGE_MODULE = '''
import collections
import dataclasses
import enum
import functools
import pathlib
import re
import typing

import numpy as np


class Color(enum.Enum):
    RED = 1
    GREEN = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Cfg:
    lr: float = 0.1
    tags: frozenset = frozenset({"alpha", "beta", "gamma", "delta"})


class Point(typing.NamedTuple):
    x: int
    y: int = 2


Pair = collections.namedtuple("Pair", "a b")
PATTERN = re.compile(r"a+b")
WORDS = {"alpha", "beta", "gamma", "delta", "epsilon"}
TABLE = {"b": np.arange(4.0), "a": [1, (2, 3)], "s": frozenset(WORDS)}
CFG = Cfg()
SCALE = functools.partial(max, 3)
SELF = {}
SELF["me"] = SELF


class Child(dict):
    kind = Color.RED

    @property
    def prop(self):
        return self.kind

    @staticmethod
    def make():
        return Point(1)


def stage_fn():
    return (Color.GREEN, CFG.lr, Point(1), Pair(1, 2), PATTERN.match("ab"), pathlib.Path("x"), WORDS, TABLE,
            SCALE(1), SELF, Child().prop, Child.make(), [w for w in WORDS if w in {"alpha", "beta"}])
'''

DIGEST = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from orchestrator.keys.fingerprint import Fingerprinter
import edge.m
fp = Fingerprinter(Path(sys.argv[1])).stage(edge.m.stage_fn)
print(json.dumps([fp.digest, fp.parts]))
"""


def test_fingerprints_are_the_same_in_every_process(tmp_path):
    """Sets, enums, dataclasses, patterns, partials, arrays, cycles: no key moves between processes."""
    import json
    import os
    import subprocess

    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "__init__.py").write_text("")
    (tmp_path / "edge" / "m.py").write_text(EDGE_MODULE)
    found = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run([sys.executable, "-c", DIGEST, str(tmp_path)], env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        found.append(json.loads(proc.stdout))
    digest, parts = found[0]
    assert not [label for label in parts if "whole module" in label], parts  # every value encoded
    assert {"edge.m:WORDS", "edge.m:PATTERN", "edge.m:CFG", "edge.m:SCALE", "edge.m:Child"} <= set(parts)
    assert all(f == found[0] for f in found[1:])

"""Maps of cheap items cached by content-defined segment (cache="segment", or "auto" on many cheap items)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import EXPERIMENT, statuses
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.map.cuts import cut, fingerprint, level_for

STAGES = '''
import os, time
from orchestrator import stage


def mark(value):
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(f"{value}\\n")


@stage(outputs=["numbers"])
def numbers(count: int = 5000, insert_at: int = -1, kind: str = "int"):
    values = list(range(count))
    if insert_at >= 0:
        values.insert(insert_at, -1)
    if kind == "float":
        return [v / 4 for v in values]
    if kind == "pair":
        return [(v, str(v)) for v in values]
    return values


@stage(inputs=["numbers"], outputs=["squares"], map_over="numbers", cache="segment", chunk_size=64)
def square(numbers, delay: float = 0.0):
    mark(numbers)
    if os.path.exists(os.environ["RUNS_LOG"] + ".fail") and numbers == 1234:
        raise ValueError(f"bad item {numbers}")
    if delay:
        time.sleep(delay)
    return numbers * numbers if not isinstance(numbers, tuple) else numbers[1] * 2


@stage(inputs=["numbers"], outputs=["per_item"], map_over="numbers", cache="item")
def per_item(numbers):
    return numbers * numbers if not isinstance(numbers, tuple) else numbers[1] * 2


@stage(inputs=["numbers"], outputs=["slow_first"], map_over="numbers")
def slow_first(numbers):
    if numbers == 0:
        mark("zero")
        time.sleep(0.2)
    return -numbers


@stage(inputs=["numbers"], outputs=["cubes"], map_over="numbers")
def cube(numbers):
    return numbers * numbers * numbers if not isinstance(numbers, tuple) else numbers[1] * 3
'''


@pytest.fixture
def segs(make_project):
    return make_project({
        "stages/__init__.py": "",
        "stages/s.py": STAGES,
        "params/p.yaml": "params: {count: 5000}\ntargets: [squares]\n",
        "params/auto.yaml": "params: {count: 12000}\ntargets: [cubes]\n",
        "params/few.yaml": "params: {count: 300}\ntargets: [cubes]\n",
        "params/slow.yaml": "params: {count: 10000}\ntargets: [slow_first]\n",
        "params/both.yaml": "params: {count: 5000}\ntargets: [squares, per_item]\n",
    })


def computed(proj) -> Counter:
    """Items the stage computed since the last call (from its own log), then clear it."""
    if not proj.log.exists():
        return Counter()
    values = Counter(proj.log.read_text().split())
    proj.log.unlink()
    return values


def records(proj) -> tuple[list[str], list[str]]:
    """(segment records, item records) under the store's maps/ folder."""
    names = [p.name for p in (proj.root / "cache" / "maps").glob("*/*/*.json")]
    return [n for n in names if n[:2] == "s" + n[1:2] and n[1:2].isdigit()], [n for n in names if n[0] != "s"]


def load(proj, name: str, params: str, *overrides: str):
    from orchestrator import load as load_artifact

    os.chdir(proj.root)
    return load_artifact(name, params=params, overrides=list(overrides))


def test_segments_store_runs_of_items_and_the_output_equals_per_item_caching(segs):
    summary = segs.run_json("both", "--workers", "2")
    assert summary["status"] == "succeeded"
    assert sum(computed(segs).values()) == 5000  # every item once
    pieces, items = records(segs)
    assert 5000 / 256 <= len(pieces) <= 5000 / 16  # segments of 16..256 items (chunk_size=64)
    assert load(segs, "squares", "both") == load(segs, "per_item", "both") == [x * x for x in range(5000)]
    again = segs.run_json("both", "--workers", "2")
    assert set(statuses(again).values()) == {"cached"} and not computed(segs)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_appending_or_inserting_items_recomputes_only_the_segments_around_them(segs, workers):
    segs.run_json("p", "--workers", workers)
    computed(segs)
    segs.run_json("p", "--workers", workers, "--set", "count=5010")
    appended = computed(segs)
    assert {str(v) for v in range(5000, 5010)} <= set(appended)
    assert sum(appended.values()) <= 10 + 256  # the last segment and the new items
    segs.run_json("p", "--workers", workers, "--set", "count=5010", "--set", "insert_at=2500")
    inserted = computed(segs)
    assert "-1" in inserted and sum(inserted.values()) <= 1 + 3 * 256  # the segments around the change
    assert all(abs(int(v) - 2500) <= 3 * 256 for v in inserted if v != "-1")
    assert load(segs, "squares", "p", "count=5010", "insert_at=2500")[2499:2502] == [2499 ** 2, 1, 2500 ** 2]


def test_a_failed_item_fails_the_stage_and_a_rerun_retries_its_segment_only(segs):
    Path(str(segs.log) + ".fail").touch()
    proc = segs.experiment("run", "p", "--workers", "2", check=1)
    assert "item 1234" in proc.stdout + proc.stderr and "ValueError: bad item 1234" in proc.stdout + proc.stderr
    assert "segments that hold the failed ones" in proc.stdout + proc.stderr
    computed(segs)
    Path(str(segs.log) + ".fail").unlink()
    summary = segs.run_json("p", "--workers", "2")
    assert summary["status"] == "succeeded"
    again = computed(segs)
    assert "1234" in again and sum(again.values()) <= 256
    assert load(segs, "squares", "p")[1234] == 1234 ** 2


def test_accepted_failures_leave_none_and_keep_the_other_items_of_the_segment(segs):
    Path(str(segs.log) + ".fail").touch()
    summary = segs.run_json("p", "--workers", "0", "--max-item-failures", "1")
    assert summary["status"] == "succeeded"
    squares = load(segs, "squares", "p")
    assert squares[1234] is None and squares[1233] == 1233 ** 2 and squares[1235] == 1235 ** 2


def test_kill_9_mid_map_keeps_finished_segments(segs):
    env = segs.env()
    proc = subprocess.Popen([*EXPERIMENT, "run", "p", "--workers", "2", "--set", "delay=0.002"], cwd=segs.root,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(records(segs)[0]) < 8:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(records(segs)[0])
    assert kept >= 8
    first = computed(segs)
    summary = segs.run_json("p", "--workers", "2", "--set", "delay=0.002")
    assert summary["status"] == "succeeded"
    resumed = computed(segs)
    assert sum(resumed.values()) < 5000 and set(first) | set(resumed) == {str(v) for v in range(5000)}
    assert load(segs, "squares", "p", "delay=0.002") == [x * x for x in range(5000)]


def test_auto_cuts_many_cheap_items_into_segments_and_keeps_few_items_per_item(segs):
    segs.run_json("few", "--workers", "2")
    pieces, items = records(segs)
    assert not pieces and items  # 300 items: cached one by one
    segs.run_json("auto", "--workers", "2")
    pieces, _ = records(segs)
    assert pieces  # 12,000 cheap items: segments
    assert load(segs, "cubes", "auto") == [x ** 3 for x in range(12000)]
    grown = segs.run_json("auto", "--workers", "2", "--set", "count=12001")  # the map key remembers its caching
    assert statuses(grown)[("cube", "auto")] == "ran"
    assert len(records(segs)[0]) <= len(pieces) + 2


def test_auto_keeps_slow_items_per_item_and_reuses_the_timed_ones(segs):
    segs.run_json("slow", "--workers", "0")
    assert computed(segs)["zero"] == 1  # timed to choose, and stored: not computed again
    pieces, items = records(segs)
    assert not pieces and items
    assert len(list((segs.root / "cache" / "maps").glob("*/*/s-item.json"))) == 1  # the choice, kept
    assert load(segs, "slow_first", "slow")[:3] == [0, -1, -2]
    segs.run_json("slow", "--workers", "0", "--set", "count=10001")  # remembered: not timed again
    assert computed(segs)["zero"] == 0 and not records(segs)[0]


def test_a_corrupt_segment_is_recomputed_with_a_warning(segs):
    segs.run_json("p", "--workers", "0")
    computed(segs)
    record = sorted((segs.root / "cache" / "maps").glob("*/*/s*.json"))[3]
    obj = json.loads(record.read_text())["object"]
    path = segs.root / "cache" / "objects" / obj[:2] / obj
    os.chmod(path, 0o644)
    path.write_bytes(b"garbage")
    proc = segs.experiment("run", "p", "--workers", "0", "--set", "count=5001")
    assert "corrupt" in proc.stdout + proc.stderr
    again = computed(segs)
    assert 1 < sum(again.values()) <= 256 + 256 + 1
    assert load(segs, "squares", "p", "count=5001") == [x * x for x in range(5001)]


@pytest.mark.parametrize("kind", ["float", "pair"])
def test_floats_and_other_items_are_segmented_like_ints(segs, kind):
    segs.run_json("both", "--workers", "0", "--set", f"kind={kind}")
    assert load(segs, "squares", "both", f"kind={kind}") == load(segs, "per_item", "both", f"kind={kind}")
    computed(segs)
    segs.run_json("both", "--workers", "0", "--set", f"kind={kind}", "--set", "insert_at=100")
    assert sum(computed(segs).values()) <= 1 + 3 * 256


def test_shards_split_segments_and_a_full_run_then_computes_nothing(segs):
    one = segs.experiment("run", "p", "--workers", "0", "--shard", "1/2", check=None)
    two = segs.experiment("run", "p", "--workers", "0", "--shard", "2/2", check=None)
    assert "SHARDED" in one.stdout + one.stderr
    first = sum(computed(segs).values())
    assert first == 5000, (one.stdout, two.stdout)
    summary = segs.run_json("p", "--workers", "0")
    assert summary["status"] == "succeeded" and not computed(segs)


def test_frames_and_arrays_are_segmented_and_keep_their_shape(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/t.py": '''
import numpy as np, pandas as pd
from orchestrator import stage

@stage(outputs=["table"])
def table(n: int = 3000):
    return pd.DataFrame({"a": np.arange(n), "b": np.arange(n) * 0.5}, index=np.arange(n) + 7)

@stage(outputs=["points"])
def points(n: int = 3000):
    return np.arange(n * 3, dtype=np.float64).reshape(n, 3)

@stage(inputs=["table"], outputs=["sums"], map_over="table", cache="segment", chunk_size=64)
def sums(table):
    return {"s": table["a"] + table["b"]}

@stage(inputs=["points"], outputs=["norms"], map_over="points", cache="segment", chunk_size=64)
def norms(points):
    return float(points.sum())
''',
        "params/t.yaml": "params: {n: 3000}\ntargets: [sums, norms]\n",
    })
    assert proj.run_json("t", "--workers", "0")["status"] == "succeeded"
    sums, norms = load(proj, "sums", "t"), load(proj, "norms", "t")
    assert list(sums.index[:2]) == [7, 8] and sums["s"].tolist() == [a * 1.5 for a in range(3000)]
    assert norms.tolist() == [9.0 * i + 3.0 for i in range(3000)]
    assert records(proj)[0] and not records(proj)[1]


def test_a_setup_runs_once_per_worker_process_when_cached_by_segment(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/w.py": '''
import os
from orchestrator import stage

@stage(outputs=["xs"])
def xs(n: int = 3000):
    return list(range(n))

@stage(inputs=["xs"], outputs=["ys"], map_over="xs", cache="segment", chunk_size=64)
def ys(xs, ctx):
    return xs + ctx.worker

@ys.setup
def offset(ctx):
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(f"setup-{os.getpid()}\\n")
    return 1000
''',
        "params/w.yaml": "params: {n: 3000}\n",
    })
    proj.run_json("w")
    setups = [w for w in proj.log.read_text().split() if w.startswith("setup-")]
    assert 1 <= len(setups) == len(set(setups)) <= len(os.sched_getaffinity(0))  # once per pool worker
    assert load(proj, "ys", "w") == [x + 1000 for x in range(3000)]


def test_cache_option_is_checked_at_the_decorator(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/b.py": '''
from orchestrator import stage

@stage(outputs=["xs"])
def xs():
    return [1]

@stage(inputs=["xs"], outputs=["ys"], map_over="xs", cache="segments")
def ys(xs):
    return xs
''',
        "params/b.yaml": "params: {}\n",
    })
    proc = proj.experiment("run", "b", check=None)
    assert proc.returncode != 0 and "cache='segments' must be 'auto', 'item' or 'segment'" in proc.stderr
    proj.edit("stages/b.py", 'cache="segments"', 'cache="segment", batch_size=8')
    proc = proj.experiment("run", "b", check=None)
    assert proc.returncode != 0 and "batches are cached by item" in proc.stderr


# -- where cuts fall (pure) ------------------------------------------------------------------
def names(values, level):
    prints = fingerprint(values, lambda p: "")
    return prints.names(cut(prints, level))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-2**70, 2**70), min_size=1, max_size=3000), st.integers(4, 8))
def test_cuts_cover_every_item_once_within_their_bounds(values, level):
    prints = fingerprint(values, lambda p: "")
    bounds = cut(prints, level)
    assert [s for s, _ in bounds] == [0] + [e for _, e in bounds[:-1]] and bounds[-1][1] == len(values)
    assert all(e - s <= 4 << level for s, e in bounds)
    assert all(e - s >= (1 << level) // 4 for s, e in bounds[:-1])


@pytest.mark.parametrize("make", [lambda r: r.randrange(10**6), lambda r: r.random(), lambda r: str(r.random()),
                                  lambda r: str(r.random()).encode(), lambda r: (r.randrange(10**6), "x")])
def test_an_insertion_changes_only_the_segments_around_it(make):
    rng = random.Random(7)
    values = [make(rng) for _ in range(20000)]
    before = names(values, 6)
    values.insert(10000, make(rng))
    after = names(values, 6)
    assert len(set(after) - set(before)) <= 3 and len(set(before) - set(after)) <= 3
    assert len(before) > 100


@pytest.mark.parametrize("edit", ["delete", "change", "append 1,000"])
def test_deleting_changing_or_appending_keeps_the_other_segments(edit):
    rng = random.Random(11)
    values = [rng.randrange(10**9) for _ in range(20000)]
    before = names(values, 6)
    if edit == "delete":
        del values[7000]
    elif edit == "change":
        values[7000] += 1
    else:
        values += [rng.randrange(10**9) for _ in range(1000)]
    after = names(values, 6)
    kept = len(set(before) & set(after))
    assert kept >= len(before) - 3, (edit, kept, len(before))


def test_equal_looking_items_of_other_types_get_other_names():
    lists = ([1, 2, 3], [1.0, 2.0, 3.0], ["1", "2", "3"], [b"1", b"2", b"3"], [True, 2, 3], [1, 2, 4], ["12", "", "3"],
             ["1", "23", ""])
    assert len({names(v, 4)[0] for v in lists}) == len(lists)


def test_level_gives_segments_of_about_a_second_and_four_per_worker():
    assert 2 ** level_for(1e-7, 10**6, 2) in range(2**16, 2**18)  # the spread over 2 workers decides
    assert 2 ** level_for(1e-3, 10**6, 2) in range(512, 2049)  # about a second of 1 ms items
    assert level_for(1e-9, 100, 16) == 4  # never below 16 items

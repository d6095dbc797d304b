"""Map stages: per-item caching, crashes, failures, shards, setup, devices, files, batching."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import pytest
from conftest import EXPERIMENT, statuses

MAP_STAGES = '''
import os, time
from pathlib import Path
from orchestrator import files, stage


def mark(kind):
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(f"{kind} {os.getpid()}\\n")


@stage(outputs=["numbers"])
def numbers(count: int = 200):
    return list(range(count))


@stage(inputs=["numbers"], outputs=["squares"], map_over="numbers")
def square(numbers, delay: float = 0.0, ctx=None):
    mark("item")
    if numbers in (7, 13) and os.path.exists(os.environ["RUNS_LOG"] + ".fail"):
        raise ValueError(f"bad item {numbers}")
    time.sleep(delay)
    return numbers * numbers * ctx.worker["factor"]


@square.setup
def load_model(factor: int = 1, ctx=None):
    mark(f"setup {ctx.device}")
    return {"factor": factor}


@stage(inputs=["squares"], outputs=["total"])
def total(squares):
    return sum(x for x in squares if x is not None)
'''


@pytest.fixture
def mapper(make_project):
    return make_project({
        "stages/__init__.py": "",
        "stages/m.py": MAP_STAGES,
        "params/p.yaml": "params: {count: 200}\n",
    })


def marks(proj) -> Counter:
    lines = proj.ran()
    return Counter(" ".join(line.split()[:-1]) if line.startswith("setup") else line.split()[0]
                   for line in _pairs(lines))


def _pairs(words):
    """The log is 'kind [device] pid' per line; ran() split on whitespace, so rebuild lines."""
    text = " ".join(words)
    out, current = [], []
    for word in text.split():
        current.append(word)
        if word.isdigit():
            out.append(" ".join(current))
            current = []
    return out


def _read_log(proj):
    if not proj.log.exists():
        return []
    lines = proj.log.read_text().splitlines()
    proj.log.unlink()
    return lines


def test_map_computes_every_item_once_and_setup_once_per_worker(mapper):
    summary = mapper.run_json("p", "--workers", "2")
    assert summary["status"] == "succeeded"
    lines = _read_log(mapper)
    items = [line for line in lines if line.startswith("item")]
    setups = [line for line in lines if line.startswith("setup")]
    assert len(items) == 200
    item_pids = {line.split()[-1] for line in items}
    setup_pids = Counter(line.split()[-1] for line in setups)
    assert set(setup_pids) == item_pids and set(setup_pids.values()) == {1}  # once per worker process
    assert len(setup_pids) <= 2
    from orchestrator import load

    os.chdir(mapper.root)
    assert load("squares", params="p") == [x * x for x in range(200)]
    again = mapper.run_json("p", "--workers", "2")
    assert set(statuses(again).values()) == {"cached"} and _read_log(mapper) == []


def test_growing_the_input_computes_only_new_items(mapper):
    mapper.run_json("p", "--workers", "2")
    _read_log(mapper)
    summary = mapper.run_json("p", "--workers", "2", "--set", "count=250")
    assert statuses(summary)[("square", "p")] == "ran"
    assert len([line for line in _read_log(mapper) if line.startswith("item")]) == 50


def test_item_failures_are_collected_and_rerun_retries_only_them(mapper):
    flag = mapper.root / "runs.log.fail"
    flag.write_text("")
    summary = mapper.run_json("p", "--workers", "2", check=1)
    error = next(n for n in summary["nodes"] if n["stage"] == "square")["error"]
    assert "2 of 200 items failed (items 7, 13)" in error["message"]
    assert "first: item 7: ValueError: bad item 7" in error["message"]
    assert "ValueError: bad item 7" in error["traceback"]
    assert len([line for line in _read_log(mapper) if line.startswith("item")]) == 200
    flag.unlink()
    mapper.run_json("p", "--workers", "2")
    assert len([line for line in _read_log(mapper) if line.startswith("item")]) == 2


def test_each_distinct_item_failure_keeps_its_traceback(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/m.py": '''
            from orchestrator import stage

            @stage(outputs=["words"])
            def words():
                return ["a", "b", "", "c", "", "dd"]

            def first_letter(word):
                return word[0]

            @stage(inputs=["words"], outputs=["codes"], map_over="words")
            def code(words):
                if len(words) > 1:
                    raise ValueError(f"{words!r} is too long")
                return ord(first_letter(words))
        ''',
        "params/p.yaml": "params: {}\n",
    })
    summary = proj.run_json("p", "--workers", "0", check=1)
    error = next(n for n in summary["nodes"] if n["stage"] == "code")["error"]
    assert "3 of 6 items failed (items 2, 4, 5)" in error["message"]
    trace = error["traceback"]
    # the two empty words fail the same way: one traceback for both; the long word its own
    assert "item 2, 4:" in trace and trace.count("IndexError: string index out of range") == 1
    assert "in first_letter" in trace
    assert "item 5:" in trace and "ValueError: 'dd' is too long" in trace
    proc = proj.experiment("run", "p", "--workers", "0", check=1)
    assert "in first_letter" in proc.stdout and "is too long" in proc.stdout


def test_accepting_item_failures(mapper):
    (mapper.root / "runs.log.fail").write_text("")
    summary = mapper.run_json("p", "--workers", "0", "--max-item-failures", "2")
    assert summary["status"] == "succeeded"
    from orchestrator import load

    os.chdir(mapper.root)
    squares = load("squares", params="p")
    assert squares[7] is None and squares[13] is None and squares[8] == 64


def test_killed_map_resumes_with_only_missing_items(mapper):
    from orchestrator.map.segments import SegmentStore
    from orchestrator.store.local import LocalStore as Store

    proc = subprocess.Popen([*EXPERIMENT, "run", "p", "--workers", "2", "--set", "delay=0.02", "--set", "count=400"],
                            cwd=mapper.root, env=mapper.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if mapper.log.exists() and mapper.log.read_text().count("item") >= 150:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _read_log(mapper)
    store = Store(mapper.root / "cache")
    stored = sum(len(SegmentStore(store, p.name).index()) for p in (store.root / "maps").glob("*/*"))
    assert 0 < stored < 400
    summary = mapper.run_json("p", "--workers", "2", "--set", "delay=0.02", "--set", "count=400")
    assert summary["status"] == "succeeded"
    recomputed = len([line for line in _read_log(mapper) if line.startswith("item")])
    assert recomputed == 400 - stored


def test_shards_in_separate_processes_then_assemble_without_recompute(mapper):
    first = mapper.run_json("p", "--shard", "1/2", "--workers", "1")
    assert statuses(first)[("square", "p")] == "sharded"
    assert statuses(first)[("total", "p")] == "skipped"
    n1 = len([line for line in _read_log(mapper) if line.startswith("item")])
    second = mapper.run_json("p", "--shard", "2/2", "--workers", "1")
    n2 = len([line for line in _read_log(mapper) if line.startswith("item")])
    assert n1 + n2 == 200 and 0 < n1 < 200
    # the last shard finds every item stored, so it assembles the whole output
    assert statuses(second)[("square", "p")] == "ran"
    full = mapper.run_json("p")
    assert [line for line in _read_log(mapper) if line.startswith("item")] == []
    assert set(statuses(full).values()) == {"cached"}
    from orchestrator import load

    os.chdir(mapper.root)
    assert load("total", params="p") == sum(x * x for x in range(200))


def test_assembling_run_without_shard_recomputes_nothing(mapper):
    mapper.run_json("p", "--shard", "1/3", "--workers", "1")
    mapper.run_json("p", "--shard", "3/3", "--workers", "1")
    mapper.run_json("p", "--shard", "2/3", "--workers", "1", "--target", "squares")
    _read_log(mapper)
    mapper.run_json("p")
    assert [line for line in _read_log(mapper) if line.startswith("item")] == []


def test_bad_shard_is_a_usage_error(mapper):
    proc = mapper.experiment("run", "p", "--shard", "3/2", check=2)
    assert "I must be between 1 and N" in proc.stderr


def test_device_workers_get_one_device_each(mapper):
    mapper.run_json("p", "--devices", "cpu,cpu")
    setups = [line for line in _read_log(mapper) if line.startswith("setup")]
    assert sorted(line.split()[1] for line in setups) == ["cpu"] * len(setups) and 1 <= len(setups) <= 2


def test_rows_batches_arrays_and_errors(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/rows.py": '''
            import numpy as np
            import pandas as pd
            from orchestrator import stage

            @stage(outputs=["table"])
            def table():
                return pd.DataFrame({"a": [1, 2, 3], "b": [10, 20, 30]}, index=[5, 6, 7])

            @stage(inputs=["table"], outputs=["sums"], map_over="table")
            def row_sum(table):
                return {"a": table["a"], "sum": table["a"] + table["b"]}

            @stage(outputs=["matrix"])
            def matrix():
                return np.arange(12.0).reshape(4, 3)

            @stage(inputs=["matrix"], outputs=["norms"], map_over="matrix", batch_size=3)
            def norms(matrix):
                assert isinstance(matrix, list) and len(matrix) <= 3
                return [float(np.linalg.norm(row)) for row in matrix]

            @stage(outputs=["mapping"])
            def mapping():
                return {"not": "a sequence"}

            @stage(inputs=["mapping"], outputs=["bad"], map_over="mapping")
            def over_dict(mapping):
                return mapping
        ''',
        "params/p.yaml": "params: {}\n",
    })
    summary = proj.run_json("p", "--workers", "2", "--keep-going", check=1)
    error = next(n for n in summary["nodes"] if n["stage"] == "over_dict")["error"]
    assert "maps over 'mapping', which is a dict, not a sequence" in error["message"]
    from orchestrator import load

    os.chdir(proj.root)
    sums = load("sums", params="p")
    assert list(sums.index) == [5, 6, 7] and list(sums["sum"]) == [11, 22, 33]
    norms = load("norms", params="p")
    assert norms.shape == (4,) and norms[1] == pytest.approx((9 + 16 + 25) ** 0.5)


def test_files_artifact_hashes_by_content_and_maps_per_file(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/docs.py": '''
            import os
            from pathlib import Path
            from orchestrator import files, stage

            raw = files("data/**/*.txt", name="raw")

            @stage(inputs=["raw"], outputs=["lengths"], map_over="raw")
            def length(raw: Path):
                with open(os.environ["RUNS_LOG"], "a") as handle:
                    handle.write(f"item {raw.name}\\n")
                return len(raw.read_text())
        ''',
        "params/p.yaml": "params: {}\n",
    })
    data = proj.root / "data" / "sub"
    data.mkdir(parents=True)
    for i in range(5):
        (data / f"{i}.txt").write_text("x" * i)
    proj.run_json("p", "--workers", "0")
    assert len(_read_log(proj)) == 5
    assert set(statuses(proj.run_json("p", "--workers", "0")).values()) == {"cached"}
    (data / "new.txt").write_text("abc")
    (data / "2.txt").write_text("changed!")
    proj.run_json("p", "--workers", "0")
    assert sorted(line.split()[1] for line in _read_log(proj)) == ["2.txt", "new.txt"]


def test_file_items_are_keyed_by_path_and_content(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/docs.py": '''
            from pathlib import Path
            from orchestrator import files, stage

            raw = files("data/*.txt", name="raw")

            @stage(inputs=["raw"], outputs=["names"], map_over="raw")
            def name(raw: Path):
                return raw.name
        ''',
        "params/p.yaml": "params: {}\n",
    })
    from orchestrator import load

    data = proj.root / "data"
    data.mkdir()
    for file_name in ("a.txt", "b.txt", "c.txt"):
        (data / file_name).write_text("same content")
    proj.run_json("p", "--workers", "0")
    assert load("names", params="p", project_dir=proj.root) == ["a.txt", "b.txt", "c.txt"]
    (data / "c.txt").rename(data / "d.txt")
    proj.run_json("p", "--workers", "0")
    assert load("names", params="p", project_dir=proj.root) == ["a.txt", "b.txt", "d.txt"]


def test_non_picklable_items_and_inputs_are_clear_errors_before_any_worker_starts(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/bad.py": '''
            from orchestrator import stage

            # cloudpickle stores lambdas; worker processes receive plain pickles, which cannot hold them

            @stage(outputs=["fns"], cachers={"fns": "pickle"})
            def fns():
                return [lambda x: x, lambda x: 2 * x]

            @stage(inputs=["fns"], outputs=["out"], map_over="fns")
            def use(fns):
                return 1

            @stage(outputs=["numbers"])
            def numbers():
                return [1, 2, 3]

            @stage(outputs=["scale"], cachers={"scale": "pickle"})
            def scale():
                return lambda x: 3 * x

            @stage(inputs=["numbers", "scale"], outputs=["scaled"], map_over="numbers")
            def scaled(numbers, scale):
                return scale(numbers)
        ''',
        "params/p.yaml": "params: {}\n",
    })
    summary = proj.run_json("p", "--workers", "2", "--keep-going", check=1)
    errors = {n["stage"]: n["error"]["message"] for n in summary["nodes"] if n["error"]}
    assert set(errors) == {"use", "scaled"}, errors
    assert "map stage 'use': item 0 of 'fns' (function) cannot be sent to worker processes" in errors["use"]
    assert "map stage 'scaled': its input 'scale' (function) cannot be sent to worker processes" in errors["scaled"]
    assert all("Fix:" in message for message in errors.values())
    in_process = proj.run_json("p", "--workers", "0", "--target", "scaled")
    assert in_process["status"] == "succeeded"  # the fix the message names



def test_shard_run_without_json_prints_the_sharded_status(mapper):
    proc = mapper.experiment("run", "p", "--shard", "1/2", "--workers", "1")
    assert "SHARDED" in proc.stderr + proc.stdout


def test_map_progress_reaches_the_driver_from_process_pool_workers(mapper):
    import orchestrator
    from orchestrator.engine.driver import RunObserver

    class Watch(RunObserver):
        def __init__(self):
            self.states = []

        def map_progress(self, node_id, progress):
            self.states.append((node_id, progress.computed, progress.total))

    watch = Watch()
    result = orchestrator.run("p", executor="process", observer=watch, project_dir=mapper.root)
    assert result.ok
    square = [(computed, total) for node, computed, total in watch.states if node.startswith("square")]
    assert square[0] == (0, 200) and square[-1] == (200, 200)  # from the start to the end, live
    assert len(square) > 2  # chunk by chunk, not only at the end


DUPLICATES = '''
from orchestrator import stage


@stage(outputs=["words"])
def words():
    return ["a", "b", "bad", "a", "bad", "c", "a"]  # "a" three times, "bad" twice


@stage(inputs=["words"], outputs=["lengths"], map_over="words", max_item_failures=2)
def length(words):
    if words == "bad":
        raise ValueError("bad word")
    return len(words)
'''


def test_map_progress_counts_every_copy_of_a_duplicate_item_like_the_failure_message(make_project):
    import orchestrator
    from orchestrator.engine.driver import RunObserver

    proj = make_project({"stages/__init__.py": "", "stages/d.py": DUPLICATES, "params/p.yaml": "params: {}\n"})

    class Watch(RunObserver):
        def __init__(self):
            self.states = []

        def map_progress(self, node_id, progress):
            self.states.append(progress)

    watch = Watch()
    session = orchestrator.open_session("p", project_dir=proj.root)
    result = session.run(observer=watch, options={"workers": 0})
    assert result.ok  # two failed positions, two accepted
    last = watch.states[-1]
    assert (last.total, last.done, last.computed, last.failed) == (7, 7, 5, 2)  # each item ran once
    assert orchestrator.load("lengths", params="p", project_dir=proj.root) == [1, 1, None, 1, None, 1, 1]


WHERE = '''
import os, time
from orchestrator import stage


@stage(outputs=["numbers"])
def numbers(count: int = 50):
    return list(range(count))


@stage(outputs=["here"])
def here():
    return os.getpid()


@stage(inputs=["numbers"], outputs=["quick"], map_over="numbers")
def quick(numbers):
    return os.getpid()


@stage(inputs=["numbers"], outputs=["slow"], map_over="numbers", resources={"cpus": 2})  # 2 on any machine
def slow(numbers):
    time.sleep(0.03)  # 50 items: 1.5 s of work, worth a pool
    return os.getpid()
'''


def test_tiny_maps_run_in_the_stages_process_and_long_ones_on_the_pool(make_project):
    from orchestrator import load

    proj = make_project({"stages/__init__.py": "", "stages/w.py": WHERE, "params/p.yaml": "params: {}\n"})
    assert proj.run_json("p")["status"] == "succeeded"
    stage_pid = load("here", params="p", project_dir=proj.root)
    assert set(load("quick", params="p", project_dir=proj.root)) == {stage_pid}  # no pool to start
    slow = load("slow", params="p", project_dir=proj.root)
    # after 8 timed items, the rest go to a pool of at most the stage's 2 cpus, on any machine (how many of
    # its workers start in time to take a chunk is the pool's affair: a fast machine may need only one)
    assert 1 <= len(set(slow[8:])) <= 2 and stage_pid not in slow[8:]

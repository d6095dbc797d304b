"""One-node scheduling: stages admitted by the GPUs they ask for, each on GPUs of its own.

The GPUs are a stub ``nvidia-smi`` on PATH that the test controls (this machine has none);
stages write the ``CUDA_VISIBLE_DEVICES`` they see and when they ran to files the test reads.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from orchestrator.engine.admission import Ledger
from orchestrator.errors import ResourceError
from orchestrator.machine import Gpu, Inventory, inventory
from orchestrator.project.decorators import stage

STAGES = '''
import json, os, time
from pathlib import Path
from orchestrator import stage

@stage(outputs=["model"], resources={"gpus": GPUS})
def train(lr, ctx):
    started = time.time()
    time.sleep(SLEEP)
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    out = Path(os.environ["SEEN_DIR"]) / f"{ctx.param_set}.json"
    out.write_text(json.dumps({"gpus": seen, "start": started, "end": time.time()}))
    return {"lr": lr, "gpus": seen}

@stage(inputs=["model"], outputs=["score"])
def evaluate(model, ctx):
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    (Path(os.environ["SEEN_DIR"]) / f"{ctx.param_set}.eval").write_text(json.dumps(seen))
    return {"gpus": seen, "lr": model["lr"]}
'''


def fake_gpus(directory: Path, used_mib: list[int]) -> Path:
    """A stub nvidia-smi that shows one GPU per entry, with that much memory in use (of 80 GiB)."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = "\\n".join(f"{i}, {used}, 81920, 0" for i, used in enumerate(used_mib))
    tool = directory / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '{rows}\\n'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return directory


@pytest.fixture
def gpu_project(make_project, tmp_path, monkeypatch):
    def make(gpus: float, sets: int, used_mib: list[int], sleep: float = 0.6):
        bin_dir = fake_gpus(tmp_path / "bin", used_mib)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        seen = tmp_path / "seen"
        seen.mkdir(exist_ok=True)
        monkeypatch.setenv("SEEN_DIR", str(seen))
        lrs = ", ".join(str(i + 1) for i in range(sets))
        proj = make_project({
            "stages/__init__.py": "",
            "stages/train.py": STAGES.replace("GPUS", repr(gpus)).replace("SLEEP", repr(sleep)),
            "params/sweep.yaml": f"grid:\n  lr: [{lrs}]\n",
        })
        return proj, seen
    return make


def _executions(seen: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(seen.glob("*.json"))]


def _most_at_once(runs: list[dict]) -> int:
    """The most executions running at one instant (each starts after the ones it replaced ended)."""
    return max(sum(1 for o in runs if o["start"] <= r["start"] < o["end"]) for r in runs)


def test_eight_trainings_on_four_gpus_run_four_at_a_time_each_on_its_own_gpu(gpu_project):
    proj, seen = gpu_project(gpus=1, sets=8, used_mib=[0, 0, 0, 0])
    summary = json.loads(proj.experiment("run", "sweep", "-j", "auto", "--json").stdout)
    assert summary["status"] == "succeeded"
    runs = _executions(seen)
    assert len(runs) == 8
    assert all(r["gpus"] in {"0", "1", "2", "3"} for r in runs)  # exactly one GPU of the node, by index
    assert 2 <= _most_at_once(runs) <= 4  # in parallel, never more than the GPUs
    for r in runs:  # no two overlapping trainings ever shared a GPU
        overlapping = [o for o in runs if o is not r and o["start"] < r["end"] and r["start"] < o["end"]]
        assert r["gpus"] not in {o["gpus"] for o in overlapping}
    waited = sorted(runs, key=lambda r: r["start"])[4:]  # the queued ones started as others ended
    assert all(any(o["end"] <= w["start"] + 0.05 for o in runs) for w in waited)
    # a stage that asks for no GPU sees none on a node that has GPUs (it cannot take a reserved one)
    assert {json.loads(p.read_text()) for p in seen.glob("*.eval")} == {""}


def test_the_run_record_keeps_which_gpu_each_execution_held(gpu_project):
    proj, seen = gpu_project(gpus=1, sets=2, used_mib=[0, 0], sleep=0.1)
    summary = json.loads(proj.experiment("run", "sweep", "-j", "2", "--json").stdout)
    from orchestrator.records import open_history

    history = open_history(proj.root / "cache")
    try:
        executions = history.executions(history.run(summary["run_id"]))
    finally:
        history.close()
    held = {e.param_set: (e.extras or {}).get("gpus") for e in executions if e.stage == "train"}
    by_set = {p.stem: json.loads(p.read_text())["gpus"] for p in seen.glob("*.json")}
    assert held == by_set and set(held.values()) <= {"0", "1"}
    report = Path(summary["report"]).read_text()  # the report's stage timeline shows which GPUs each held
    assert "<th>GPUs</th>" in report and all(f"<td>{gpu}</td>" in report for gpu in held.values())


def test_a_stage_asking_for_more_gpus_than_the_node_has_fails_before_anything_runs(gpu_project):
    proj, seen = gpu_project(gpus=5, sets=2, used_mib=[0, 0, 0, 0])
    proc = proj.experiment("run", "sweep", "-j", "auto", check=2)
    assert "train" in proc.stderr and "5 GPUs" in proc.stderr and "4 free GPUs" in proc.stderr
    assert "Fix:" in proc.stderr
    assert not list(seen.glob("*.json"))


def test_gpus_in_use_by_other_processes_are_never_handed_out(gpu_project):
    proj, seen = gpu_project(gpus=1, sets=4, used_mib=[0, 40000, 0], sleep=0.3)
    proj.experiment("run", "sweep", "-j", "auto")
    assert {r["gpus"] for r in _executions(seen)} <= {"0", "2"}
    proc = proj.experiment("run", "sweep", "-j", "auto", "--gpus", "1", "--force", "train", check=2)
    assert "0 free GPUs" in proc.stderr and "in use by other processes: 1" in proc.stderr


def test_fractional_gpus_share_one_device(gpu_project):
    proj, seen = gpu_project(gpus=0.5, sets=4, used_mib=[0], sleep=0.8)
    proj.experiment("run", "sweep", "-j", "auto")
    runs = _executions(seen)
    assert {r["gpus"] for r in runs} == {"0"}
    assert _most_at_once(runs) == 2


def test_gpus_flag_chooses_which_gpus_the_run_hands_out(gpu_project):
    proj, seen = gpu_project(gpus=1, sets=3, used_mib=[0, 0, 0, 0], sleep=0.2)
    proc = proj.experiment("run", "sweep", "-j", "auto", "--gpus", "2,3")
    assert {r["gpus"] for r in _executions(seen)} <= {"2", "3"}
    # the console says which GPU each held, and what waited for one
    lines = proc.stderr.splitlines()
    assert sum(1 for line in lines if line.lstrip().startswith("RAN") and "train" in line
               and (line.endswith("GPU 2") or line.endswith("GPU 3"))) == 3
    assert any(line.lstrip().startswith("WAITING") and "held:" in line for line in lines)


def test_without_gpus_a_gpu_stage_runs_on_cpu_with_a_warning(gpu_project, monkeypatch, tmp_path):
    proj, seen = gpu_project(gpus=1, sets=2, used_mib=[], sleep=0.1)
    proc = proj.experiment("run", "sweep", "-j", "2")
    assert "runs without one" in proc.stderr
    assert {r["gpus"] for r in _executions(seen)} == {None}


# -- the ledger alone (pure) ---------------------------------------------------------------------------------


def _stage(resources=None):
    @stage(outputs=["x"], resources=resources, name=f"s{abs(hash(json.dumps(resources)))}")
    def s():
        return 1
    return s


def test_ledger_reserves_whole_gpus_and_waits_when_none_is_free():
    ledger = Ledger(Inventory((Gpu(0), Gpu(1)), cpus=2, memory=8 << 30))
    two = ledger.request(_stage({"gpus": 2}))
    first = ledger.take(two)
    assert first is not None and first.visible == "0,1"
    assert ledger.take(ledger.request(_stage({"gpus": 1}))) is None  # waits
    ledger.give(first)
    assert ledger.take(ledger.request(_stage({"gpus": 1}))).visible == "0"


def test_ledger_packs_fractions_onto_shared_gpus_and_keeps_whole_ones_whole():
    ledger = Ledger(Inventory((Gpu(0), Gpu(1)), cpus=8, memory=0))
    half = ledger.request(_stage({"gpus": 0.5}))
    assert [ledger.take(half).visible for _ in range(2)] == ["0", "0"]
    assert ledger.take(ledger.request(_stage({"gpus": 1}))).visible == "1"
    assert ledger.take(half) is None


@pytest.mark.parametrize("asked", [1.5, -1, "two"])
def test_ledger_refuses_malformed_gpu_counts(asked):
    with pytest.raises(ResourceError, match="Fix"):
        Ledger(Inventory((Gpu(0),), cpus=2)).check([_stage({"gpus": asked})])


def test_ledger_refuses_more_memory_than_the_node_has_and_clamps_cores():
    ledger = Ledger(Inventory((), cpus=2, memory=1 << 30))
    with pytest.raises(ResourceError, match="memory"):
        ledger.check([_stage({"mem": "2G"})])
    big = ledger.request(_stage({"cpus": 64}))
    assert big.cpus == 2 and ledger.take(big) is not None  # more cores than exist: all of them, alone
    assert ledger.take(ledger.request(_stage())) is None


def test_a_torchrun_stage_asks_for_one_gpu_per_rank():
    @stage(outputs=["m"])
    def fit(ctx):
        return ctx.torchrun("external/train.py", nproc_per_node=2)

    @stage(outputs=["m"])
    def fit_auto(ctx, n):
        return ctx.torchrun("external/train.py", nproc_per_node=n)

    four = Ledger(Inventory(tuple(Gpu(i) for i in range(4)), cpus=4))
    assert four.request(fit).gpus == 2 and four.request(fit_auto).gpus == 1
    assert Ledger(Inventory((), cpus=4)).request(fit).gpus == 0  # a CPU machine: torchrun runs on gloo
    assert Ledger(Inventory((Gpu(0),), cpus=4)).request(fit).gpus == 1  # never more than the node has


def test_inventory_reads_nvidia_smi_and_honours_cuda_visible_devices(tmp_path, monkeypatch):
    bin_dir = fake_gpus(tmp_path / "bin", [0, 0, 50000, 0])
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,2")
    node = inventory()
    assert [g.index for g in node.gpus] == [3, 2] and [g.busy for g in node.gpus] == [False, True]
    assert node.cpus >= 1 and node.memory > 0
    assert [g.index for g in inventory("none").gpus] == []


TORCHRUN_STAGE = '''
from orchestrator import stage

@stage(outputs=["seen"])
def fit(lr, ctx):
    return ctx.torchrun("external/seen.py", args={"lr": lr}, outputs={"seen": "seen.json"}, nproc_per_node=2)
'''

TORCHRUN_SCRIPT = '''
import json, os, time
from pathlib import Path
from orchestrator.external import parse_args, write_json

args = parse_args(lr=0.0)
rank = os.environ["RANK"]
Path(os.environ["SEEN_DIR"], f"{args.lr}-rank{rank}.json").write_text(json.dumps(
    {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time()}))
time.sleep(1.0)
if rank == "0":
    write_json(args.output_dir / "seen.json", {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES")})
'''


def test_a_torchrun_stage_holds_one_gpu_per_rank_and_its_ranks_see_only_those(make_project, tmp_path, monkeypatch):
    bin_dir = fake_gpus(tmp_path / "bin", [0, 0, 0, 0])
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    seen = tmp_path / "seen"
    seen.mkdir()
    monkeypatch.setenv("SEEN_DIR", str(seen))
    proj = make_project({"stages/__init__.py": "", "stages/fit.py": TORCHRUN_STAGE, "external/seen.py": TORCHRUN_SCRIPT,
                         "params/sweep.yaml": "grid:\n  lr: [1, 2, 3]\n"})
    proj.experiment("run", "sweep", "-j", "auto", timeout=240)
    ranks = {p.stem: json.loads(p.read_text())["gpus"] for p in seen.glob("*.json")}
    assert len(ranks) == 6
    by_set = {lr: {ranks[f"{lr}-rank0"], ranks[f"{lr}-rank1"]} for lr in ("1.0", "2.0", "3.0")}
    assert all(len(gpus) == 1 and len(next(iter(gpus)).split(",")) == 2 for gpus in by_set.values())
    held = [set(next(iter(g)).split(",")) for g in by_set.values()]
    assert all(h <= {"0", "1", "2", "3"} for h in held)
    starts = sorted(json.loads(p.read_text())["start"] for p in seen.glob("*rank0.json"))
    assert starts[1] - starts[0] < 1.0 and starts[2] - starts[0] >= 1.0  # two at once, the third waited


DEVICE_MAP = '''
import os
from orchestrator import stage

@stage(outputs=["items"])
def items():
    return list(range(8))

@stage(inputs=["items"], outputs=["where"], map_over="items", devices=["cuda:0", "cuda:1"],
       resources={"gpus": 2})
def where(items, ctx):
    return (ctx.device, os.environ.get("CUDA_VISIBLE_DEVICES"))

@where.setup
def started(ctx):
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    with open(os.path.join(os.environ["SEEN_DIR"], f"worker-{os.getpid()}"), "w") as f:
        f.write(f"{ctx.device} {seen}")
'''


def test_device_map_workers_each_see_one_gpu_of_the_stage(make_project, tmp_path, monkeypatch):
    bin_dir = fake_gpus(tmp_path / "bin", [0, 60000, 0, 0])
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("SEEN_DIR", str(tmp_path))
    proj = make_project({"stages/__init__.py": "", "stages/m.py": DEVICE_MAP, "params/p.yaml": "params: {}\n"})
    proj.experiment("run", "p")
    workers = sorted(p.read_text() for p in tmp_path.glob("worker-*"))
    assert workers == ["cuda:0 0", "cuda:0 2"]  # GPU 1 is busy: the stage holds 0 and 2, one per worker
    from orchestrator import load

    assert set(load("where", params="p", project_dir=proj.root)) <= {("cuda:0", "0"), ("cuda:0", "2")}


@pytest.mark.parametrize("output, busy", [
    ("0, 0 MiB, 81920 MiB, 0 %\n1, 50000 MiB, 81920 MiB, 90 %\n", [False, True]),  # with units
    ("0, 0, 81920\n1, 50000, 81920\n", [False, True]),  # no utilization column
    ("GPU 0: NVIDIA H200 (UUID: GPU-1234-5678)\nGPU 1: NVIDIA H200 (UUID: GPU-9abc)\n", [False, False]),  # -L only
])
def test_inventory_reads_nvidia_smi_output_with_units_or_fewer_columns(tmp_path, monkeypatch, output, busy):
    tool = tmp_path / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\ncat <<'END'\n{output}END\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [(g.index, g.busy) for g in inventory().gpus] == list(zip([0, 1], busy))


def test_without_nvidia_smi_cuda_visible_devices_names_the_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # (no nvidia-smi there)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert [g.index for g in inventory().gpus] == [2, 5]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert inventory().gpus == ()


def test_two_gpu_stages_on_four_gpus_hold_disjoint_pairs_two_at_a_time(gpu_project):
    proj, seen = gpu_project(gpus=2, sets=4, used_mib=[0, 0, 0, 0], sleep=0.5)
    proj.experiment("run", "sweep", "-j", "auto")
    runs = _executions(seen)
    assert len(runs) == 4 and all(len(set(r["gpus"].split(","))) == 2 for r in runs)
    assert _most_at_once(runs) == 2
    for r in runs:  # two at once never share a GPU
        for o in runs:
            if o is not r and o["start"] < r["end"] and r["start"] < o["end"]:
                assert not set(r["gpus"].split(",")) & set(o["gpus"].split(","))

"""torchrun stages for real: 2 processes, gloo on CPU, nothing mocked.

Each test builds a small project in tmp_path whose `fit` stage runs external/train.py (a
plain torch.distributed script: one all_reduce per "epoch", a checkpoint per epoch) through
ctx.torchrun. The script's behavior is steered by environment variables, which are not
part of the cache key, exactly like a transient crash or hang would not be.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import orchestrator
from orchestrator.engine.driver import Status
from orchestrator.errors import ExternalScriptFailed
from orchestrator.processes import alive, process_table
from orchestrator.torchrun.launch import TorchrunSpec, build_command, choose_devices
from orchestrator.torchrun.processtree import run_supervised

ROOT = Path(__file__).resolve().parents[1]

STAGE = '''
import os
from orchestrator import stage


@stage(outputs=["checkpoint", "metrics"])
def fit(epochs: int = 3, ctx=None):
    return ctx.torchrun("external/train.py", args={"epochs": epochs},
                        outputs={"checkpoint": "model.pt", "metrics": "metrics.json"},
                        nproc_per_node=2, timeout=float(os.environ.get("TRAIN_TIMEOUT", "90")))
'''

SCRIPT = '''
"""A toy distributed training: one all_reduce per epoch."""
import json
import os
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist

from orchestrator.external import (atomic_path, checkpoint_dir, entrypoint, log_metric, parse_args,
                                   resume_checkpoint, write_json)


def probe(rank):
    folder = os.environ.get("PROBE_DIR")
    if not folder:
        return
    info = {"pid": os.getpid(), "port": os.environ["MASTER_PORT"], "addr": os.environ["MASTER_ADDR"]}
    Path(folder, f"rank{rank}.json").write_text(json.dumps(info))
    release = Path(folder, "release")
    for _ in range(600):
        if release.exists():
            return
        time.sleep(0.05)


@entrypoint
def main():
    args = parse_args(epochs=3)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    if rank == 0 and os.environ.get("LAUNCH_LOG"):
        with open(os.environ["LAUNCH_LOG"], "a") as handle:
            handle.write("launch\\n")
    probe(rank)
    if os.environ.get("HANG"):
        if rank == 1:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a rank that does not even die politely
        time.sleep(600)
    start, total, resumed = 0, 0.0, None
    checkpoint = resume_checkpoint(args)
    if checkpoint is not None:
        state = torch.load(checkpoint)
        start, total, resumed = state["epoch"] + 1, state["total"], state["epoch"]
        print(f"resumed from epoch {resumed}", flush=True)
    for epoch in range(start, args.epochs):
        if rank == 1 and epoch == int(os.environ.get("CRASH_AT", "-1")):
            raise RuntimeError(f"crash at epoch {epoch}")
        value = torch.ones(1)
        dist.all_reduce(value)
        total += value.item()
        if rank == 0:
            with atomic_path(checkpoint_dir(args) / "last.ckpt") as staged:
                torch.save({"epoch": epoch, "total": total}, staged)
        dist.barrier()
        log_metric("total", total, step=epoch)
        print(f"epoch {epoch} total={total}", flush=True)
    if rank == 0 and not os.environ.get("SKIP_OUTPUT"):
        with atomic_path(args.output_dir / "model.pt") as staged:
            torch.save({"total": total}, staged)
    passed = args.resume_from and Path(args.resume_from).relative_to(args.output_dir).as_posix()
    write_json(args.output_dir / "metrics.json", {"total": total, "resumed_from": resumed, "passed": passed})
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
'''

FILES = {
    "stages/__init__.py": "",
    "stages/train.py": STAGE,
    "external/train.py": SCRIPT,
    "params/base.yaml": "params:\n  epochs: 3\n",
}


def write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    write(root, FILES)
    for name in ("ORCHESTRATOR_CACHE_DIR", "CRASH_AT", "HANG", "SKIP_OUTPUT", "PROBE_DIR", "TRAIN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAUNCH_LOG", str(tmp_path / "launches.log"))
    return root


def run(root: Path, *overrides: str) -> orchestrator.RunResult:
    return orchestrator.open_session("base", overrides=list(overrides), project_dir=root).run()


def launches(root: Path) -> int:
    log = root.parent / "launches.log"
    count = len(log.read_text().split()) if log.exists() else 0
    log.unlink(missing_ok=True)
    return count


def failure(result: orchestrator.RunResult) -> str:
    outcome = result.outcome("fit")
    assert outcome.status is Status.FAILED, outcome
    assert outcome.error is not None and outcome.error.type == "ExternalScriptFailed"
    return outcome.error.message


def listeners_of(pids: set[int]) -> list[str]:
    """``addr:port`` of every listening TCP socket owned by ``pids`` (from /proc)."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                addr, port = cols[1].split(":")
                found.append(f"{_address(addr, width)}:{int(port, 16)}")
    return found


def _address(hex_addr: str, width: int) -> str:
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # /proc stores 32-bit words LE
    if width == 8:
        return ".".join(str(b) for b in words)
    if words[:12] == b"\0" * 10 + b"\xff\xff":
        return ".".join(str(b) for b in words[12:])  # IPv4-mapped
    return "[" + ":".join(words[i : i + 2].hex() for i in range(0, 16, 2)) + "]"


def descendants(root_pid: int) -> set[int]:
    table = process_table()
    found, stack = set(), [root_pid]
    while stack:
        parent = stack.pop()
        for pid, (ppid, _, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                stack.append(pid)
    return found


def wait_for(predicate, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


# -- caching -----------------------------------------------------------------------------


def test_checkpoint_is_cached_reused_and_retrained_only_on_a_real_script_edit(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run(project)
    assert first.ok and first.outcome("fit").status is Status.RAN
    assert launches(project) == 1
    metrics = json.loads(first.load("metrics").read_text())
    assert metrics == {"total": 6.0, "resumed_from": None, "passed": None}
    assert [m["value"] for m in first.outcome("fit").extras["metrics"]] == [2.0, 4.0, 6.0]
    assert not any((project / "cache" / "attempts" / "fit").iterdir()), "attempt folder kept after success"
    streamed = capsys.readouterr().err
    assert "[rank0]: epoch 2 total=6.0" in streamed and "[rank1]:" not in streamed
    saved = Path(first.outcome("fit").log_path).read_text()  # the stage's log keeps every rank
    assert "[rank0]: epoch 2 total=6.0" in saved and "[rank1]: epoch 2 total=6.0" in saved

    assert run(project).outcome("fit").status is Status.CACHED
    assert launches(project) == 0

    script = project / "external" / "train.py"
    script.write_text(script.read_text().replace("def probe(rank):", "# a comment\ndef probe(rank):  # why\n"))
    assert run(project).outcome("fit").status is Status.CACHED
    assert launches(project) == 0

    script.write_text(script.read_text().replace("total += value.item()", "total += 2 * value.item()"))
    edited = run(project)
    assert edited.outcome("fit").status is Status.RAN
    assert launches(project) == 1
    assert json.loads(edited.load("metrics").read_text())["total"] == 12.0


ONE_OUTPUT = '''
from orchestrator import stage


@stage(outputs=["metrics"])
def fit(epochs: int = 3, ctx=None):
    return ctx.torchrun("external/train.py", args={"epochs": epochs},
                        outputs={"metrics": "metrics.json"}, nproc_per_node=2)
'''


def test_a_one_output_stage_returns_the_file_itself(project: Path, tmp_path: Path) -> None:
    (project / "stages" / "train.py").write_text(ONE_OUTPUT)
    result = run(project)
    assert result.ok, result.outcome("fit")
    stored = result.outcome("fit").outputs["metrics"]
    assert stored.cacher == "file"  # the script's file, not a pickled {name: path} dict
    assert json.loads(result.load("metrics").read_text())["total"] == 6.0
    # the same content from another store has the same hash (no attempt-folder path inside)
    other = orchestrator.open_session("base", project_dir=project, cache_dir=tmp_path / "other").run()
    assert other.outcome("fit").outputs["metrics"].hash == stored.hash


ECHO_STAGE = '''
from orchestrator import stage


@stage(outputs=["echo"])
def echo(ctx=None):
    return ctx.torchrun("external/echo.py", args={"n": 3, "log": "x", "nnodes": 7},
                        outputs={"echo": "echo.json"}, nproc_per_node=2)
'''

ECHO_SCRIPT = '''
from orchestrator.external import entrypoint, parse_args, write_json


@entrypoint
def main():
    args = parse_args(n=0, log="", nnodes=0)
    write_json(args.output_dir / "echo.json", {"n": args.n, "log": args.log, "nnodes": args.nnodes})


if __name__ == "__main__":
    main()
'''


def test_script_arguments_that_prefix_torchrun_options_reach_the_script(project: Path) -> None:
    write(project, {"stages/train.py": ECHO_STAGE, "external/echo.py": ECHO_SCRIPT, "params/base.yaml": "params: {}\n"})
    result = run(project)
    assert result.ok, result.outcome("echo")
    assert json.loads(result.load("echo").read_text()) == {"n": 3, "log": "x", "nnodes": 7}


# -- failures ----------------------------------------------------------------------------


def test_crash_fails_with_the_rank_traceback_and_the_rerun_resumes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRASH_AT", "2")
    message = failure(run(project, "epochs=4"))
    # (under load, gloo may abort the raising rank while it exits: still rank 1, with its traceback)
    assert re.search(r"stage 'fit' \[base\]: external/train.py failed: rank 1 (exited with code 1|was killed by "
                     r"signal 6 \(SIGABRT\))", message), message
    assert "Traceback (most recent call last)" in message
    assert "RuntimeError: crash at epoch 2" in message
    log = Path(message.split("Log: ")[1].split()[0])
    assert log.is_file() and "crash at epoch 2" in log.read_text()
    assert message.rstrip().endswith("checkpoints.") and "resumes from the last checkpoint" in message

    monkeypatch.delenv("CRASH_AT")
    rerun = run(project, "epochs=4")
    assert rerun.outcome("fit").status is Status.RAN
    metrics = json.loads(rerun.load("metrics").read_text())
    assert metrics == {"total": 8.0, "resumed_from": 1, "passed": "checkpoints/last.ckpt"}  # --resume-from
    steps = [m["step"] for m in rerun.outcome("fit").extras["metrics"]]
    assert steps == [0, 1, 2, 3]  # epochs 0-1 from the failed attempt, 2-3 from the resumed one


def test_hung_script_is_killed_at_the_timeout_without_orphans(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "release").touch()
    monkeypatch.setenv("PROBE_DIR", str(probes))
    monkeypatch.setenv("HANG", "1")
    monkeypatch.setenv("TRAIN_TIMEOUT", "12")
    started = time.monotonic()
    message = failure(run(project))
    elapsed = time.monotonic() - started
    assert "timed out after" in message and "every rank was stopped" in message
    assert 12 <= elapsed < 40
    ranks = [json.loads((probes / f"rank{r}.json").read_text())["pid"] for r in (0, 1)]
    assert not any(alive(pid) for pid in ranks), "a rank survived the timeout"
    token = str(project)
    leftovers = []
    for pid in process_table():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if token in cmdline:
            leftovers.append(cmdline)
    assert leftovers == []


def test_exit_zero_without_the_declared_output_fails(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKIP_OUTPUT", "1")
    message = failure(run(project))
    assert "exited 0 but declared output 'checkpoint' (model.pt) is missing" in message
    assert "Fix:" in message


def test_missing_script_fails_before_launching(project: Path) -> None:
    stage = project / "stages" / "train.py"
    stage.write_text(stage.read_text().replace("external/train.py", "external/nope.py"))
    message = failure(run(project))
    assert "external/nope.py does not exist" in message and "Fix: create the script" in message
    assert launches(project) == 0


def test_external_script_failed_is_a_stage_failure() -> None:
    error = ExternalScriptFailed("x", stage="fit", param_set="base", script="external/train.py", returncode=-9)
    assert isinstance(error, orchestrator.StageFailed) and error.stage == "fit"
    assert error.returncode == -9 and error.exit_code == 1  # exit_code is the CLI's


# -- network: ports and listeners --------------------------------------------------------


def test_single_node_training_listens_on_loopback_only(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = tmp_path / "probes"
    probes.mkdir()
    monkeypatch.setenv("PROBE_DIR", str(probes))
    results: list[orchestrator.RunResult] = []
    worker = threading.Thread(target=lambda: results.append(run(project)))
    worker.start()
    try:
        wait_for(lambda: (probes / "rank0.json").exists() and (probes / "rank1.json").exists())
        listening = listeners_of(descendants(os.getpid()))
    finally:
        (probes / "release").touch()
        worker.join(timeout=120)
    assert results and results[0].ok
    assert len(listening) >= 3, listening  # the rendezvous store, the shared store, gloo per rank
    assert all(entry.startswith("127.0.0.1:") for entry in listening), listening
    master = json.loads((probes / "rank0.json").read_text())
    assert master["addr"] == "127.0.0.1" and f"127.0.0.1:{master['port']}" in listening


def test_two_trainings_at_once_get_different_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRATOR_CACHE_DIR", raising=False)
    probes, procs = [], []
    for name in ("a", "b"):
        root = tmp_path / name
        write(root, FILES)
        probe = tmp_path / f"probes-{name}"
        probe.mkdir()
        probes.append(probe)
        env = {**os.environ, "PROBE_DIR": str(probe)}
        procs.append(subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "base"], cwd=root, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        wait_for(lambda: all((p / f"rank{r}.json").exists() for p in probes for r in (0, 1)), 90)
        listening = listeners_of(descendants(os.getpid()))
        ports = [json.loads((p / "rank0.json").read_text())["port"] for p in probes]
    finally:
        for probe in probes:
            (probe / "release").touch()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert ports[0] != ports[1]
    assert all(entry.startswith("127.0.0.1:") for entry in listening), listening


# -- the launcher and the process supervisor, without a stage ---------------------------


def test_argv_for_one_node_and_for_several(tmp_path: Path) -> None:
    spec = TorchrunSpec(script=tmp_path / "t.py", workdir=tmp_path, run_dir=tmp_path / ".r", log_path=tmp_path / "l",
                        args=("--lr", "0.1"), env={"FOO": "1"})
    single = build_command(spec, choose_devices("auto", None, []), base_env={})
    assert single.argv[1:3] == ("-m", "orchestrator.torchrun.agent") and "--standalone" in single.argv
    assert single.env["ORCHESTRATOR_LOOPBACK"] == "1" and single.env["ORCHESTRATOR_PARENT_PID"] == str(os.getpid())
    assert single.argv[-3:] == (str(tmp_path / "t.py"), "--lr", "0.1")
    assert single.argv[single.argv.index("--nproc-per-node") + 1] == "2"
    assert single.env["GLOO_SOCKET_IFNAME"] == "lo" and single.env["FOO"] == "1"
    assert single.env["TMPDIR"] == str(tmp_path / ".r" / "tmp")
    multi = build_command(TorchrunSpec(**{**spec.__dict__, "nnodes": 2, "node_rank": 1,
                                          "rdzv_endpoint": "node0:29400", "rdzv_id": "job"}),
                          choose_devices(4, None, []), base_env={})
    assert "--standalone" not in multi.argv and multi.env["ORCHESTRATOR_LOOPBACK"] == "0"
    for flag, value in (("--nnodes", "2"), ("--node-rank", "1"), ("--rdzv-endpoint", "node0:29400"),
                        ("--rdzv-id", "job"), ("--nproc-per-node", "4")):
        assert multi.argv[multi.argv.index(flag) + 1] == value
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        build_command(TorchrunSpec(**{**spec.__dict__, "nnodes": 2}), choose_devices(1, None, []), base_env={})


def test_gpu_choice() -> None:
    visible = [(0, 0.9, 95.0), (1, 0.0, 0.0), (2, 0.01, 3.0), (3, 0.0, 0.0)]
    assert choose_devices("auto", 2, visible).cuda_visible == "1,3"
    assert choose_devices("auto", None, visible).nproc == 4
    cpu = choose_devices("auto", 2, [])
    assert cpu.nproc == 2 and cpu.cuda_visible is None and "no GPU is visible" in cpu.note
    with pytest.raises(ValueError, match="only 3 of the 4 visible GPUs are free"):
        choose_devices("auto", 4, visible)


def _spawner(pid_file: Path) -> str:
    """Python code that starts a grandchild in a session of its own (as torchrun does) and sleeps."""
    return ("import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; print(\"up\", flush=True); time.sleep(60)'],"
            " start_new_session=True)\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
            "time.sleep(60)\n")


def test_supervisor_kills_a_tree_spread_over_sessions_on_an_error(tmp_path: Path) -> None:
    def on_line(line: str) -> None:
        if line == "up":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_supervised([sys.executable, "-c", _spawner(tmp_path / "pid")], on_line=on_line, grace=2)
    assert not alive(int((tmp_path / "pid").read_text()))


def test_sigterm_to_the_orchestrator_stops_the_tree_first(tmp_path: Path) -> None:
    code = ("import sys\nfrom orchestrator.torchrun.processtree import run_supervised\n"
            f"run_supervised([sys.executable, '-c', {_spawner(tmp_path / 'pid')!r}], on_line=print)\n")
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "up"
        parent.terminate()
        assert parent.wait(timeout=30) == -15  # it still dies of the SIGTERM...
    assert not alive(int((tmp_path / "pid").read_text()))  # ...but only after stopping its tree


def test_script_helpers_parse_plain_arguments_and_write_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.external import (
        atomic_path,
        latest_checkpoint,
        parse_args,
        resume_checkpoint,
    )

    monkeypatch.chdir(tmp_path)
    argv = ["--train-features", "x.parquet", "--lr", "0.1", "--shuffle", "false", "--sizes", "[1, 2]"]
    args = parse_args(argv, train_features=Path, lr=0.01, shuffle=True, sizes=[3], epochs=2)
    assert (args.train_features, args.lr, args.shuffle, args.sizes, args.epochs) == (Path("x.parquet"), 0.1, False,
                                                                                       [1, 2], 2)
    assert args.output_dir == tmp_path and args.resume_from is None and resume_checkpoint(args) is None
    assert parse_args(["--train_features", "y"], train_features=Path).train_features == Path("y")
    with pytest.raises(SystemExit):
        parse_args([], train_features=Path)  # required, with argparse's usage message
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "checkpoints" / "a.ckpt") as staged:
        staged.write_text("half")
        raise RuntimeError
    assert list((tmp_path / "checkpoints").iterdir()) == []
    with atomic_path(tmp_path / "checkpoints" / "epoch=1.ckpt") as staged:
        staged.write_text("done")
    assert latest_checkpoint(tmp_path / "checkpoints") == tmp_path / "checkpoints" / "epoch=1.ckpt"
    (tmp_path / "checkpoints" / "last.ckpt").write_text("last")
    assert resume_checkpoint(args) == tmp_path / "checkpoints" / "last.ckpt"


# -- the example: PyTorch Lightning DDP --------------------------------------------------


def test_example_trains_with_lightning_ddp_under_torchrun(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_CACHE_DIR"}
    command = [sys.executable, "-m", "orchestrator", "run", "baseline", "--cache-dir", str(tmp_path / "cache"),
               "--set", "epochs=2", "--json"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr
    nodes = {n["stage"]: n for n in json.loads(proc.stdout)["nodes"]}
    assert nodes["fit"]["status"] == "ran" and nodes["evaluate"]["status"] == "ran"
    assert "[rank0]:" in proc.stderr and "[rank1]:" not in proc.stderr
    assert "Warning" not in proc.stderr and "LeafSpec" not in proc.stderr, proc.stderr
    again = orchestrator.open_session("baseline", overrides=["epochs=2"], cache_dir=tmp_path / "cache",
                                      project_dir=ROOT).run()
    assert again.count(Status.RAN) == 0  # everything reused, training included
    board = again.load("leaderboard")
    assert list(board["param_set"]) == ["baseline"] and board["accuracy"][0] > 0.85
    # the run records of the example: lineage of the leaderboard walks back to the data, the report renders
    records = ["--cache-dir", str(tmp_path / "cache"), "--json"]

    def cli(*args: str) -> Any:
        done = subprocess.run([sys.executable, "-m", "orchestrator", *args, *records], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout)

    def stages_of(node: dict) -> set[str]:
        return {node["stage"]}.union(*(stages_of(child) for child in node.get("inputs", {}).values()))

    lineage = cli("lineage", "leaderboard")
    assert {"leaderboard", "evaluate", "fit", "featurize", "split", "load_digits"} <= stages_of(lineage[0])
    shown = cli("show", "last~1")
    assert {e["stage"]: e["status"] for e in shown["executions"]}["fit"] == "ran"
    report = Path(shown["report"]).read_text()
    assert "<svg" in report and "leaderboard" in report and "Content-Security-Policy" in report

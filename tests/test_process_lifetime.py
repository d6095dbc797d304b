"""Every process a run starts ends with it: kill -9 of the CLI alone, Ctrl-C, a zombie lease holder.

The runs here hang on purpose (stages and map items that never return) so that nothing but the
guarantee under test can end them. Each process of a run carries a marker in its environment,
which is how the tests find the forkserver, the pool workers and the resource tracker in ``/proc``;
every test kills whatever is left of its run when it ends, whether it passed or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import EXPERIMENT

from orchestrator.store.leases import Leases
from orchestrator.store.local import LocalStore

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux")

HUNG = '''
import os
import time

from orchestrator import stage


def mark(name):
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(f"{name} {os.getpid()}\\n")


@stage(outputs=["items"])
def items(n: int = 6):
    return list(range(n))


@stage(inputs=["items"], outputs=["squares"], map_over="items")
def square(items):
    mark("item")
    while True:  # a hung item
        time.sleep(0.05)


@stage(outputs=["stuck"])
def stuck():
    mark("stuck")
    while True:  # a hung stage
        time.sleep(0.05)
'''

FILES = {"stages/__init__.py": "", "stages/hung.py": HUNG, "params/p.yaml": "params: {}\n"}
TAG = "LIFETIME_TAG"
GONE_WITHIN = 10.0  # seconds for every process of a killed or interrupted run to be gone
STOPS_WITHIN = 5.0  # seconds from Ctrl-C to the CLI's exit ("about a second", with room for a busy machine)


def _tagged(tag: str) -> dict[int, str]:
    """Live processes (zombies excluded) whose environment carries ``tag``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if tag.encode() not in (entry / "environ").read_bytes():
                continue
            stat = (entry / "stat").read_bytes()
            if stat[stat.rfind(b")") + 2:][:1] == b"Z":
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0
    return int(stat[stat.rfind(b")") + 2:].split()[1])


def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _marks(proj, name: str) -> int:
    return proj.log.read_text().split().count(name) if proj.log.exists() else 0


class _Run:
    """A background `experiment ...` in a session of its own, its output in a file."""

    def __init__(self, proc: subprocess.Popen[bytes], tag: str, output: Path) -> None:
        self.proc = proc
        self.tag = tag
        self.output = output

    def processes(self) -> dict[int, str]:
        return _tagged(self.tag)

    def text(self) -> str:
        return self.output.read_text(errors="replace")


@contextlib.contextmanager
def _started(proj, *args: str) -> Iterator[_Run]:
    tag = f"{TAG}={uuid.uuid4().hex}"
    output = proj.root / f"output-{uuid.uuid4().hex[:8]}.txt"
    with open(output, "wb") as handle:
        proc = subprocess.Popen([*EXPERIMENT, *args], cwd=proj.root, env={**proj.env(), TAG: tag},
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    run = _Run(proc, tag, output)
    try:
        yield run
    finally:  # whatever the outcome, nothing of this run outlives the test
        for pid in run.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _hung(run: _Run, proj, *, items: int, stuck: int) -> None:
    """Wait until ``items`` map items and ``stuck`` stages are hanging."""
    assert _until(lambda: _marks(proj, "item") >= items and _marks(proj, "stuck") >= stuck, 40), \
        f"the run never got going:\n{run.text()}"


def _all_gone(run: _Run) -> None:
    assert _until(lambda: not run.processes(), GONE_WITHIN), \
        f"processes of the run outlived it by {GONE_WITHIN:.0f} s: {run.processes()}\n{run.text()}"


def _status(proj) -> str:
    runs = json.loads(proj.experiment("runs", "--json").stdout)
    assert len(runs) == 1, runs
    return str(runs[0]["status"])


# (9) kill -9 of the CLI alone: what `kill -9 PID` and the OOM killer do


def test_kill_9_of_the_cli_alone_ends_pool_workers_map_pool_forkservers_and_tracker(make_project):
    proj = make_project(FILES)
    with _started(proj, "run", "p", "-j", "2", "--workers", "2") as run:
        _hung(run, proj, items=2, stuck=1)
        before = run.processes()
        # the CLI, its forkserver and resource tracker, two stage workers, the map's forkserver, two map workers
        assert len(before) >= 8, before
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        _all_gone(run)


def test_kill_9_of_the_cli_alone_ends_an_in_process_maps_pool(make_project):
    proj = make_project(FILES)
    with _started(proj, "run", "p", "--target", "squares", "--workers", "2") as run:
        _hung(run, proj, items=2, stuck=0)
        assert len(run.processes()) >= 5, run.processes()  # the CLI, forkserver, tracker, two map workers
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        _all_gone(run)


FORKS = '''
import os
import time

from orchestrator import stage


def mark(name):
    with open(os.environ["RUNS_LOG"], "a") as handle:
        handle.write(f"{name} {os.getpid()}\\n")


@stage(outputs=["items"])
def items(n: int = 6):
    return list(range(n))


@stage(inputs=["items"], outputs=["squares"], map_over="items")
def square(items):
    mark("item")
    return items * items


@stage(inputs=["squares"], outputs=["forked"])
def fork_helper(squares):
    pid = os.fork()  # a helper that outlives the stage, holding every descriptor of the driver
    if pid == 0:
        while True:
            time.sleep(0.05)
    mark(f"helper-{pid}")
    mark("stuck")
    while True:
        time.sleep(0.05)
'''


def test_the_forkserver_dies_with_the_driver_even_when_a_forked_helper_keeps_its_pipe_open(make_project):
    """The stdlib forkserver exits when its "alive" pipe closes; a helper forked by a stage keeps that
    pipe open, so only the parent-death signal ends the forkserver."""
    proj = make_project({**FILES, "stages/hung.py": FORKS})
    with _started(proj, "run", "p", "--workers", "2") as run:
        _hung(run, proj, items=6, stuck=1)
        helper = next(int(w.split("-")[1]) for w in proj.log.read_text().split() if w.startswith("helper-"))
        servers = [pid for pid, line in run.processes().items()  # (its workers share its command line)
                   if "forkserver" in line and _parent(pid) == run.proc.pid]
        assert len(servers) == 1, run.processes()
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        assert _until(lambda: not set(servers) & set(run.processes()), GONE_WITHIN), \
            f"the forkserver outlived the driver: {run.processes()}"
        assert helper in run.processes()  # (the helper is the stage's own business; the test kills it)


THREAD = """
import os, threading, time
from concurrent.futures import ProcessPoolExecutor
from orchestrator.processes import forkserver, tie_pool_worker

pools = []

def start():
    pools.append(ProcessPoolExecutor(1, mp_context=forkserver(), initializer=tie_pool_worker))
    print(pools[0].submit(os.getpid).result(timeout=30), flush=True)

thread = threading.Thread(target=start)
thread.start()
thread.join()  # the thread that started the forkserver has ended
time.sleep(0.5)
print(pools[0].submit(os.getpid).result(timeout=30), flush=True)
pools[0].shutdown()
"""


def test_a_pool_started_from_a_thread_outlives_that_thread():
    """The parent-death signal fires when the *thread* that started a process ends: a forkserver started
    from another thread than the main one is not tied to it, or its pool would break with that thread."""
    tag = f"{TAG}={uuid.uuid4().hex}"
    try:
        proc = subprocess.run([sys.executable, "-c", THREAD], capture_output=True, text=True, timeout=60,
                              env={**os.environ, TAG: tag})
    finally:  # (an untied forkserver and its worker would outlive a script that failed)
        for pid in _tagged(tag):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split()
    assert first == second  # the same worker, still alive


# (10) Ctrl-C under -j 2, (11) Ctrl-C in a map stage with workers: sent to the CLI alone ("pid") or, as a
# terminal does, to its whole process group ("group")


def _interrupt(run: _Run, how: str) -> float:
    started = time.monotonic()
    if how == "pid":
        os.kill(run.proc.pid, signal.SIGINT)
    else:
        os.killpg(run.proc.pid, signal.SIGINT)
    return started


def _stopped_promptly(run: _Run, proj, started: float, *, twice: bool = False) -> None:
    """The CLI exited soon after ``started`` as interrupted, leaving no process and printing no traceback.

    ``twice``: a second Ctrl-C may have landed while the interpreter was shutting down, after it
    restored the default SIGINT action (the shell sees 130 either way), or while a pool was stopping,
    too late for the resource tracker to be told the pool's semaphores are gone (it removes them).
    """
    try:
        run.proc.wait(timeout=STOPS_WITHIN + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOPS_WITHIN + 10:.0f} s after Ctrl-C:\n{run.text()}")
    took = time.monotonic() - started
    assert took < STOPS_WITHIN, f"took {took:.1f} s to stop after Ctrl-C:\n{run.text()}"
    assert run.proc.returncode in ((130, -signal.SIGINT) if twice else (130,)), run.text()
    _all_gone(run)  # (the resource tracker has written what it had to say: it shares the CLI's stderr)
    assert "Traceback" not in run.text(), run.text()
    if not twice:
        assert "resource_tracker" not in run.text(), run.text()  # no semaphore of a pool left behind
    assert _status(proj) == "interrupted"


@pytest.mark.parametrize("how", ["pid", "group"])
def test_ctrl_c_under_a_process_pool_stops_hung_stages_at_once(make_project, how):
    proj = make_project(FILES)
    with _started(proj, "run", "p", "-j", "2", "--workers", "2") as run:
        _hung(run, proj, items=2, stuck=1)
        started = _interrupt(run, how)
        _stopped_promptly(run, proj, started)
        assert "INTERRUPTED" in run.text()


@pytest.mark.parametrize("how", ["pid", "group"])
def test_ctrl_c_in_a_map_stage_stops_its_workers_at_once(make_project, how):
    proj = make_project(FILES)
    with _started(proj, "run", "p", "--target", "squares", "--workers", "2") as run:
        _hung(run, proj, items=2, stuck=0)
        started = _interrupt(run, how)
        _stopped_promptly(run, proj, started)
        assert _marks(proj, "item") == 2  # no worker went on to its next chunk


def test_ctrl_c_is_the_drivers_a_map_worker_that_gets_one_neither_fails_nor_moves_on(make_project):
    """SIGINT sent to the map workers alone: they neither raise it into their chunk (which the pool would
    hand back while the worker starts its next chunk) nor end the run; Ctrl-C is the driver's to act on."""
    proj = make_project(FILES)
    with _started(proj, "run", "p", "--target", "squares", "--workers", "2") as run:
        _hung(run, proj, items=2, stuck=0)
        workers = [int(line.split()[1]) for line in proj.log.read_text().splitlines() if line.startswith("item ")]
        for pid in workers:
            os.kill(pid, signal.SIGINT)
        time.sleep(1.5)
        assert run.proc.poll() is None, run.text()
        assert _marks(proj, "item") == 2
        assert set(workers) <= set(run.processes())


STUBBORN = '''

@stage(outputs=["stubborn"])
def stubborn():
    mark("stuck")
    while True:  # a hung stage that takes Ctrl-C for its own
        try:
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            mark("ignored")
'''


def test_a_second_ctrl_c_ends_the_run_at_once_without_tracebacks(make_project):
    proj = make_project({**FILES, "stages/hung.py": HUNG + STUBBORN})
    with _started(proj, "run", "p", "--target", "stubborn") as run:  # in the CLI's own process
        _hung(run, proj, items=0, stuck=1)
        os.kill(run.proc.pid, signal.SIGINT)
        assert _until(lambda: _marks(proj, "ignored") == 1, 10), run.text()
        started = _interrupt(run, "pid")
        _stopped_promptly(run, proj, started)


@pytest.mark.parametrize("how", ["pid", "group"])
def test_a_second_ctrl_c_while_a_pool_stops_prints_no_traceback(make_project, how):
    proj = make_project(FILES)
    with _started(proj, "run", "p", "-j", "2", "--workers", "2") as run:
        _hung(run, proj, items=2, stuck=1)
        started = _interrupt(run, how)
        time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            _interrupt(run, how)
        _stopped_promptly(run, proj, started, twice=True)


# (extra) a lease holder that died but was not reaped yet


def test_a_lease_held_by_a_zombie_is_taken_over_at_once(tmp_path):
    code = ("import os, sys\nfrom orchestrator.store.leases import Leases\nfrom orchestrator.store.local import LocalStore\n"
            "assert Leases(LocalStore(sys.argv[1]), ttl=600).acquire('k' * 32)\nos._exit(0)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        assert _until(lambda: stat.read_bytes()[stat.read_bytes().rfind(b")") + 2:][:1] == b"Z", 30)  # not reaped
        with Leases(LocalStore(tmp_path), ttl=600) as taker:
            assert taker.acquire("k" * 32), "a zombie's lease was taken for a live run's (the TTL is 600 s)"
            taker.release("k" * 32)
    finally:
        child.kill()
        child.wait()


# SIGTERM and SIGHUP (timeout, docker stop, SLURM preemption, a closed terminal) are handled like Ctrl-C
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_to_the_cli_alone_stop_the_run_like_ctrl_c(make_project, sig):
    proj = make_project(FILES)
    with _started(proj, "run", "p", "-j", "2", "--workers", "2") as run:
        _hung(run, proj, items=2, stuck=1)
        started = time.monotonic()
        os.kill(run.proc.pid, sig)
        _stopped_promptly(run, proj, started)
        assert "INTERRUPTED" in run.text()


# (extra) a torchrun agent that hangs while stopping after the orchestrator died (seen in the kill -9 loop)


def test_an_agent_whose_torchrun_hangs_ends_a_grace_period_after_its_launcher_died(tmp_path):
    pid_file = tmp_path / "agent.pid"
    agent = ("import os, signal, sys, time\nfrom orchestrator.torchrun.agent import tie_to_parent\n"
             "tie_to_parent(grace=1.0)\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)  # a torchrun that hangs\n"
             f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n")
    launcher = ("import os, subprocess, sys, time\n"
                "env = {**os.environ, 'ORCHESTRATOR_PARENT_PID': str(os.getpid())}\n"
                f"subprocess.Popen([sys.executable, '-c', {agent!r}], env=env, start_new_session=True)\n"
                "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", launcher])
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)  # the orchestrator dies; the agent ignores the SIGTERM it gets
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                break
            time.sleep(0.1)
        alive = Path(f"/proc/{child}").exists() and Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        assert not alive, "the agent outlived its launcher by more than its grace period"
    finally:
        with contextlib.suppress(ProcessLookupError):
            parent.kill()

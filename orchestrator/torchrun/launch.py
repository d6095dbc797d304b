"""Launch a script under torchrun: devices, argv, environment, live rank-prefixed logs.

The launcher builds an argv list (never a shell string) for torchrun (``python -m
orchestrator.torchrun.agent``: torchrun's own ``main``, tied to this process) and runs it with
:func:`orchestrator.torchrun.processtree.run_supervised` (own session, timeout, SIGTERM then SIGKILL
to the whole tree, no orphan ranks). One node: ``--standalone`` with a
fresh rendezvous port per launch, and every listener kept on 127.0.0.1 (see
:mod:`orchestrator.torchrun.loopback`). Several nodes: ``--nnodes/--node-rank/--rdzv-endpoint`` are
passed through to a c10d rendezvous.

Each rank's output is tee'd by torchrun with a ``[rankN]:`` prefix; every line goes to
the launch's log file, rank 0's (or every rank's) to the ``on_output`` callback. Nothing
here prints: the default callback writes to ``sys.stderr``.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.capture import log_only
from ..machine import RESERVED_ENV, usable_cpus
from ..machine import query_gpus as machine_gpus
from .agent import LOOPBACK_ENV, PARENT_ENV
from .processtree import run_supervised

logger = logging.getLogger(__name__)

__all__ = ["Command", "Devices", "LaunchResult", "TorchrunSpec", "build_command", "choose_devices",
           "launch", "query_gpus", "write_stderr"]

CPU_PROCESSES = 2  # nproc_per_node="auto" on a machine without GPUs
TAIL_LINES = 30
_PREFIX = "[rank${rank}]: "  # torchrun's prefix for tee'd rank output
_RANK_LINE = re.compile(r"^\[rank(\d+)\]: (?:\[rank\1\]: )?(.*)$")  # torch's excepthook prefixes again
_ROOT_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.DOTALL)


@dataclass(frozen=True)
class TorchrunSpec:
    """One torchrun launch.

    Attributes:
        script: The script to run (absolute path).
        args: Arguments for the script, already strings.
        workdir: The working directory of every rank.
        run_dir: Where torchrun's per-rank logs (``ranks/``) and ``TMPDIR`` (``tmp/``) go.
        log_path: The merged, rank-prefixed log of the launch (appended to).
        nproc_per_node: Processes per node, or ``"auto"`` (visible GPUs, else 2 CPU processes).
        gpus: How many free GPUs to pick (sets ``CUDA_VISIBLE_DEVICES``), or None.
        nnodes: Number of nodes; above 1, ``rdzv_endpoint`` is required.
        node_rank: This node's rank (several nodes).
        rdzv_endpoint: ``host:port`` of the c10d rendezvous (several nodes).
        rdzv_id: The rendezvous id shared by every node of one job.
        env: Extra environment variables for the ranks.
        timeout: Seconds before the whole tree is stopped (None: no limit).
        all_ranks: Stream every rank (and torchrun's own lines), not only rank 0.
        python: The interpreter.
        python_path: Folders put first on the ranks' ``PYTHONPATH`` (the project root).
    """

    script: Path
    workdir: Path
    run_dir: Path
    log_path: Path
    args: tuple[str, ...] = ()
    nproc_per_node: int | str = "auto"
    gpus: int | None = None
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_id: str = "orchestrator"
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    all_ranks: bool = False
    python: str = sys.executable
    python_path: tuple[str, ...] = ()
    stop: threading.Event | None = field(default=None, compare=False)  # set: stop every rank (SIGTERM, then SIGKILL)


@dataclass(frozen=True)
class Devices:
    """What the ranks run on: ``nproc`` processes, on ``cuda_visible`` GPUs or on CPU."""

    nproc: int
    cuda_visible: str | None = None  # None: leave CUDA_VISIBLE_DEVICES as it is
    on_gpu: bool = False
    note: str = ""


@dataclass(frozen=True)
class Command:
    """The argv and environment of a launch."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    devices: Devices


@dataclass(frozen=True)
class LaunchResult:
    """How a launch ended.

    Attributes:
        returncode: torchrun's exit status (negative: killed by that signal).
        seconds: Wall time of the launch.
        timed_out: The timeout expired and the tree was stopped.
        failing_rank: The rank torchrun reported as the root cause, if any.
        rank_exit_code: That rank's own exit code (negative: the signal that killed it).
        tail: The last lines of the failing rank (or of rank 0, or of torchrun itself).
        tail_rank: Whose lines ``tail`` holds (None: torchrun's own).
        log_path: The merged log of the launch.
        command: What was run.
    """

    returncode: int
    seconds: float
    timed_out: bool
    failing_rank: int | None
    rank_exit_code: int | None
    tail: tuple[str, ...]
    tail_rank: int | None
    log_path: Path
    command: Command

    @property
    def ok(self) -> bool:
        """True when torchrun exited 0 in time."""
        return self.returncode == 0 and not self.timed_out


def write_stderr(line: str) -> None:
    """The default output callback: the line on ``sys.stderr`` (the stage's log captures it)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def query_gpus(env: Mapping[str, str] | None = None) -> list[tuple[int, float, float]]:
    """Visible GPUs as ``(index, memory used fraction, utilization %)``; under the scheduler's reservation
    (:data:`orchestrator.machine.RESERVED_ENV`) exactly the reserved ones, free (they are this stage's).

    Empty when nvidia-smi is missing or fails (a CPU-only machine). Honors a numeric
    ``CUDA_VISIBLE_DEVICES`` in ``env``.
    """
    environ = env if env is not None else os.environ
    reserved = environ.get(RESERVED_ENV)
    if reserved is not None:
        return [(int(i), 0.0, 0.0) for i in reserved.split(",") if i.strip().isdigit()]
    return [(g.index, g.memory_used, g.utilization) for g in machine_gpus(env)]


def choose_devices(nproc_per_node: int | str, gpus: int | None, visible: Sequence[tuple[int, float, float]]) -> Devices:
    """Decide processes and GPUs from the request and the visible GPUs (pure).

    Raises:
        ValueError: more GPUs asked than are free, or a bad ``nproc_per_node``; the message has the fix.
    """
    explicit = None if nproc_per_node == "auto" else _positive(nproc_per_node, "nproc_per_node")
    if gpus is None:
        if visible:
            return Devices(explicit or len(visible), None, True)
        return Devices(explicit or CPU_PROCESSES, None, False)
    wanted = _positive(gpus, "gpus")
    if not visible:
        note = (f"gpus={wanted} asked but no GPU is visible (nvidia-smi missing or empty): running on CPU "
                f"with {explicit or CPU_PROCESSES} processes and gloo")
        return Devices(explicit or CPU_PROCESSES, None, False, note)
    free = sorted((g for g in visible if g[1] < 0.05 and g[2] < 10), key=lambda g: (g[1], g[2], g[0]))
    if len(free) < wanted:
        raise ValueError(
            f"gpus={wanted} asked but only {len(free)} of the {len(visible)} visible GPUs are free "
            f"(free: {[g[0] for g in free]}). Fix: pass gpus={len(free) or 1}, free some GPUs, or set "
            "CUDA_VISIBLE_DEVICES yourself and leave gpus=None."
        )
    chosen = sorted(g[0] for g in free[:wanted])
    return Devices(explicit or wanted, ",".join(map(str, chosen)), True)


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int or 'auto'. Fix: pass {name}=2 or {name}='auto'.")
    return value


def build_command(spec: TorchrunSpec, devices: Devices, base_env: Mapping[str, str] | None = None) -> Command:
    """The argv and environment of ``spec`` (pure: no process, no disk).

    Raises:
        ValueError: several nodes without ``rdzv_endpoint``; the message has the fix.
    """
    single = spec.nnodes == 1
    argv = [spec.python, "-m", "orchestrator.torchrun.agent"]  # torchrun's main, tied to this process
    if single:
        argv += ["--standalone", "--nnodes", "1", "--local-addr", "127.0.0.1"]
    else:
        if not spec.rdzv_endpoint:
            raise ValueError(f"nnodes={spec.nnodes} needs rdzv_endpoint='host:port' of the rendezvous node. "
                             f"Fix: pass rdzv_endpoint='node0.example:29400' on every node.")
        argv += ["--nnodes", str(spec.nnodes), "--node-rank", str(spec.node_rank), "--rdzv-backend", "c10d",
                 "--rdzv-endpoint", spec.rdzv_endpoint, "--rdzv-id", spec.rdzv_id]
    argv += ["--nproc-per-node", str(devices.nproc), "--max-restarts", "0",
             "--log-dir", str(spec.run_dir / "ranks"), "--redirects", "3", "--tee", "3",
             str(spec.script), *spec.args]
    env = dict(os.environ if base_env is None else base_env)
    cores = usable_cpus()
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // devices.nproc)))
    env["TMPDIR"] = str(spec.run_dir / "tmp")
    env["PYTHONUNBUFFERED"] = "1"
    env["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] = _PREFIX
    if spec.python_path:
        env["PYTHONPATH"] = os.pathsep.join([*spec.python_path, *filter(None, [env.get("PYTHONPATH")])])
    if devices.cuda_visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices.cuda_visible
    env[PARENT_ENV] = str(os.getpid())
    env[LOOPBACK_ENV] = "1" if single else "0"
    if single:  # keep every listener on loopback; see orchestrator.torchrun.loopback
        env["GLOO_SOCKET_IFNAME"] = "lo"
        env["NCCL_SOCKET_IFNAME"] = "lo"
        env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "0"
    env.update({str(k): str(v) for k, v in spec.env.items()})
    return Command(tuple(argv), env, devices)


def launch(spec: TorchrunSpec, on_output: Callable[[str], None] | None = None) -> LaunchResult:
    """Run ``spec`` to the end; never raises for a failing script (see :attr:`LaunchResult.ok`).

    Raises:
        ValueError: an impossible device request or missing ``rdzv_endpoint``.
        KeyboardInterrupt: after the whole process tree was stopped.
        OSError: the interpreter could not be started.
    """
    visible = query_gpus() if spec.gpus or spec.nproc_per_node == "auto" else []
    devices = choose_devices(spec.nproc_per_node, spec.gpus, visible)
    if devices.note:
        logger.warning("%s", devices.note)
    command = build_command(spec, devices)
    (spec.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    show = on_output or write_stderr
    keep = log_only()
    tails: dict[int | None, collections.deque[str]] = collections.defaultdict(lambda: collections.deque(maxlen=200))
    agent: collections.deque[str] = collections.deque(maxlen=1000)  # torchrun's own lines
    logger.info("torchrun %s: %d process(es)%s", spec.script.name, devices.nproc,
                f" on GPUs {devices.cuda_visible}" if devices.cuda_visible else "")
    with open(spec.log_path, "a", encoding="utf-8") as log:
        log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command.argv)}\n")
        log.flush()

        def on_line(line: str) -> None:
            match = _RANK_LINE.match(line)
            rank = int(match.group(1)) if match else None
            if match:
                line = f"[rank{rank}]: {match.group(2)}"
            log.write(line + "\n")
            log.flush()
            tails[rank].append(match.group(2) if match else line)
            if rank is None:
                agent.append(line)
            if spec.all_ranks or rank == 0:
                show(line)
            else:  # every rank's output is kept in the stage's log; the console shows rank 0
                keep(line + "\n")

        outcome = run_supervised(command.argv, on_line=on_line, env=command.env, cwd=spec.workdir,
                                 timeout=spec.timeout, stop=spec.stop)
    shutil.rmtree(spec.run_dir / "tmp", ignore_errors=True)
    failing, code = _root_cause("\n".join(agent))
    rank = failing if failing in tails else (0 if 0 in tails and failing is None else None)
    tail = _tail(list(tails.get(rank, ())), to_traceback=rank is not None)
    return LaunchResult(outcome.returncode, outcome.seconds, outcome.timed_out, failing, code, tail, rank,
                        spec.log_path, command)


def _root_cause(agent_output: str) -> tuple[int | None, int | None]:
    match = _ROOT_CAUSE.search(agent_output)
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2))


def _tail(lines: list[str], *, to_traceback: bool) -> tuple[str, ...]:
    """The last ``TAIL_LINES`` lines; with ``to_traceback``, back to the start of a recent final traceback."""
    start = max(0, len(lines) - TAIL_LINES)
    if to_traceback:
        starts = [i for i in range(max(0, len(lines) - 120), len(lines))
                  if lines[i].lstrip().startswith("Traceback (most recent call last)")]
        if starts:
            start = min(start, starts[-1])
    return tuple(lines[start:])

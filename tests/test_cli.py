"""The command line: exit codes, messages, listings, formats."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import time

import pytest
from conftest import EXPERIMENT


def test_help_is_fast_and_lists_commands():
    started = time.perf_counter()
    proc = subprocess.run([*EXPERIMENT, "--help"], capture_output=True, text=True, check=True)
    assert time.perf_counter() - started < 5  # generous: the real target lives in benchmarks/
    for command in ("run", "plan", "params", "dag", "cache"):
        assert command in proc.stdout
    loaded = subprocess.run([sys.executable, "-c", "import sys, orchestrator.cli; "
                             "print(sorted(m for m in ('torch','pandas','numpy','rich') if m in sys.modules))"],
                            capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "bsae"], "Did you mean 'base'?"),
        (["run", "base", "--set", "scael=2"], "--set scael=...: no stage takes a param 'scael'. Did you mean 'scale'?"),
        (["run", "base", "--set", "scale=big"], "must be int"),
        (["run", "base", "--target", "totl"], "Did you mean 'total'?"),
        (["run", "base", "--force", "shfit"], "Did you mean 'shift'?"),
        (["run", "base", "--executor", "lcoal"], "Did you mean 'local'?"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_line(project, args, message):
    proc = project.experiment(*args, check=2)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback(project):
    proc = project.experiment("--debug", "run", "bsae", check=1)
    assert "Traceback" in proc.stderr


def test_definition_error_in_stage_module_names_the_line(project):
    project.edit("stages/pipeline.py", "from .helpers import OFFSET, double", "from .helpers import OFFSET, double\nraise RuntimeError('oops')")
    proc = project.experiment("run", "base", check=2)
    assert "stages/pipeline.py:7" in proc.stderr and "oops" in proc.stderr


def test_missing_module_import_is_clear(project):
    project.edit("stages/pipeline.py", "import os", "import os\nimport notinstalledpkg")
    proc = project.experiment("run", "base", check=2)
    assert "imports 'notinstalledpkg', which is not installed" in proc.stderr


def test_unwritable_cache_dir_is_clear(project, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = project.experiment("run", "base", "--cache-dir", str(blocker / "cache"), check=1)
    assert "cannot write the artifact store" in proc.stderr and "--cache-dir" in proc.stderr


def test_params_command_prints_resolved_sets(project):
    out = project.experiment("params", "grid", "--json").stdout
    assert json.loads(out) == {"grid[scale=1]": {"n": 5, "scale": 1}, "grid[scale=2]": {"n": 5, "scale": 2}}


def test_dag_formats(project):
    text = project.experiment("dag", "base").stdout
    assert "double_all (stage): numbers -> doubled" in text
    assert "5 stages x 1 param sets = 5 nodes" in text
    mermaid = project.experiment("dag", "base", "--format", "mermaid").stdout
    assert "make_numbers -->|numbers| double_all" in mermaid
    dot = project.experiment("dag", "base", "--format", "dot").stdout
    assert '"make_numbers" -> "shift" [label="numbers"];' in dot


def test_dag_json_lists_stages_edges_and_nodes(project):
    graph = json.loads(project.experiment("dag", "grid", "--json").stdout)
    stages = {s["name"]: s for s in graph["stages"]}
    assert stages["double_all"]["inputs"] == ["numbers"] and stages["double_all"]["params"] == ["scale"]
    assert stages["summary"]["kind"] == "aggregate"
    assert {"from": "make_numbers", "to": "shift", "artifact": "numbers"} in graph["edges"]
    assert graph["param_sets"] == ["grid[scale=1]", "grid[scale=2]"] and graph["targets"] == ["summary"]
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert len(nodes) == 9  # 4 stages x 2 sets + the aggregate
    total = next(n for n in graph["nodes"] if n["stage"] == "total" and n["param_set"] == "grid[scale=2]")
    assert sorted(nodes[u]["stage"] for u in total["upstream"]) == ["double_all", "shift"]
    assert json.loads(project.experiment("dag", "grid", "--format", "json").stdout) == graph


def test_dry_run_runs_nothing(project):
    out = project.experiment("run", "base", "--dry-run").stdout
    assert "RUN" in out and "no cached result" in out
    assert not project.log.exists()


def test_plan_json_and_cache_ls(project):
    project.run_json("base")
    plan = json.loads(project.experiment("plan", "base", "--json").stdout)
    assert {p["action"] for p in plan} == {"CACHED"}
    listing = json.loads(project.experiment("cache", "ls", "--json").stdout)
    assert {row["artifact"] for row in listing} == {"numbers", "doubled", "shifted", "total", "summary"}
    table = project.experiment("cache", "ls").stdout
    assert "make_numbers" in table and "numbers" in table
    only = json.loads(project.experiment("cache", "ls", "--stage", "shift", "--json").stdout)
    assert [row["artifact"] for row in only] == ["shifted"]
    named = json.loads(project.experiment("cache", "ls", "--artifact", "total", "--set", "base", "--json").stdout)
    assert [(row["stage"], row["param_set"]) for row in named] == [("total", "base")]
    assert json.loads(project.experiment("cache", "ls", "--set", "other", "--json").stdout) == []


def test_cache_dir_env_override(project, tmp_path):
    env_cache = tmp_path / "elsewhere"
    proc = subprocess.run([*EXPERIMENT, "run", "base"], cwd=project.root, capture_output=True, text=True,
                          env={**project.env(), "ORCHESTRATOR_CACHE_DIR": str(env_cache)})
    assert proc.returncode == 0, proc.stderr
    assert (env_cache / "keys").is_dir() and not (project.root / "cache").exists()


def test_project_root_found_from_subfolder_and_not_shadowed(project, tmp_path):
    sub = project.root / "notebooks"
    sub.mkdir()
    # a different `stages` package earlier on PYTHONPATH must not shadow the project's
    other = tmp_path / "other"
    (other / "stages").mkdir(parents=True)
    (other / "stages" / "__init__.py").write_text("raise ImportError('wrong stages package')\n")
    env = {**project.env(), "PYTHONPATH": str(other)}
    proc = subprocess.run([*EXPERIMENT, "run", "base"], cwd=sub, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


STAGE_LOGS = '''
from orchestrator import stage


@stage(outputs=["chatty"])
def chatty(ctx):
    ctx.logger.info("info from the stage")
    ctx.logger.warning("a warning from the stage")
    print("printed")
    return 1


@stage(outputs=["silent"])
def silent():
    raise ValueError("no output, no print")
'''


def test_stage_logs_keep_ctx_logger_lines_once_and_failures_always_leave_a_log(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/s.py": STAGE_LOGS, "params/p.yaml": "params: {}\n"})
    proc = proj.experiment("run", "p", "--keep-going", check=1)
    assert "its log:" in proc.stdout
    run_id = json.loads(proj.experiment("runs", "--json").stdout)[0]["id"]
    chatty = proj.experiment("log", run_id, "chatty").stdout
    assert chatty.count("info from the stage") == 1 and chatty.count("a warning from the stage") == 1
    assert "printed" in chatty
    silent = proj.experiment("log", run_id, "silent").stdout
    assert "silent [p] failed: ValueError: no output, no print" in silent and "Traceback" in silent


def _plain_rows(out: str) -> dict[str, list[str]]:
    """The summary table of a run whose stdout is a pipe: stage -> its cells (columns as the dashed rule marks them)."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    rows = {}
    for line in lines[rule + 1:]:
        if not line.strip() or line.startswith("report:"):
            break
        cells = [line[start:end].strip() for start, end in spans]
        rows[cells[0]] = cells[1:]
    return rows


def _rich_rows(out: str) -> dict[str, list[str]]:
    """The summary table drawn by rich on a terminal: stage -> its cells."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("│ "):
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


def _in_terminal(project, *args: str) -> str:
    """Run `experiment ARGS` with stdout and stderr on a pseudo-terminal (160 columns); return what it printed."""
    fcntl = pytest.importorskip("fcntl")
    pty = pytest.importorskip("pty")
    termios = pytest.importorskip("termios")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = {k: v for k, v in project.env().items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    proc = subprocess.Popen([*EXPERIMENT, *args], cwd=project.root, env=env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    return _plain_text(b"".join(chunks).decode().replace("\r", ""))


def _plain_text(shown: str) -> str:
    """Terminal output without its escape sequences (colours, cursor moves)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)


def test_the_run_summary_is_a_stage_by_param_set_table(project):
    out = project.experiment("run", "grid").stdout
    header = next(line for line in out.splitlines() if "stage" in line and "scale=1" in line)
    assert "scale=2" in header and "all sets" in header  # one column per set, and the aggregate's
    rows = {stage: [cell.split(" ")[0] for cell in cells] for stage, cells in _plain_rows(out).items()}  # ran 0.0s
    assert rows["double_all"] == ["ran", "ran", ""]  # double_all takes scale: it ran for each set
    assert sorted(rows["make_numbers"]) == ["", "cached", "ran"]  # one key, computed once
    assert rows["summary"] == ["", "", "ran"]  # an aggregate: one node, in the "all sets" column


def test_a_terminal_gets_the_same_summary_drawn_by_rich_a_log_gets_plain_columns(project):
    project.experiment("run", "grid")
    logged = project.experiment("run", "grid").stdout  # stdout is a pipe here, as in a log file
    assert not set("│┃━") & set(logged)
    shown = _in_terminal(project, "run", "grid")
    assert "│" in shown and "┃" in shown  # rich's table
    assert _rich_rows(shown) == _plain_rows(logged) == {
        "make_numbers": ["cached", "cached", ""], "double_all": ["cached", "cached", ""],
        "shift": ["cached", "cached", ""], "total": ["cached", "cached", ""], "summary": ["", "", "cached"]}


GC_STAGES = '''
import gc, sys
from orchestrator import stage


@stage(outputs=["process"])
def process():
    return {"gc": gc.isenabled(), "threshold": list(gc.get_threshold()), "rich": "rich" in sys.modules}
'''


def test_stages_see_the_garbage_collector_as_python_sets_it_and_a_logged_run_loads_no_rich(make_project):
    import orchestrator

    proj = make_project({"stages/__init__.py": "", "stages/g.py": GC_STAGES, "params/p.yaml": "params: {}\n"})
    proj.experiment("run", "p")  # stdout and stderr are pipes, as in a log; the stage runs in the CLI's process
    default = subprocess.run([sys.executable, "-c", "import gc; print(list(gc.get_threshold()))"],
                             capture_output=True, text=True, check=True).stdout
    seen = orchestrator.load("process", params="p", project_dir=proj.root)
    assert seen == {"gc": True, "threshold": json.loads(default), "rich": False}


def test_the_plain_summary_fits_columns_and_force_color_asks_for_the_terminal_form(project):
    project.experiment("run", "grid")

    def run_with(**extra: str) -> str:
        return subprocess.run([*EXPERIMENT, "run", "grid"], cwd=project.root, env={**project.env(), **extra},
                              capture_output=True, text=True, check=True).stdout

    narrow = run_with(COLUMNS="40")  # stage x 3 sets does not fit 40 columns: counts per stage instead
    assert _plain_rows(narrow)["double_all"] == ["2", "0.0"] and "scale=1" not in narrow
    forced = run_with(FORCE_COLOR="1", COLUMNS="160")  # a pipe, but the user asked for the terminal's table
    assert "\x1b[" in forced and _rich_rows(_plain_text(forced))["summary"] == ["", "", "cached"]

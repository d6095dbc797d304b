"""Metrics of a stage that is still running reach its report (and the UI) as they are reported."""

from __future__ import annotations

import time

STAGES = '''
import time
from pathlib import Path

from orchestrator import stage


@stage(outputs=["model"])
def train(ctx, epochs: int = 3):
    for epoch in range(epochs):
        ctx.metric("val_loss", 1.0 / (epoch + 1), step=epoch, show=False)
    release = Path(ctx.project_root) / "release"
    while not release.exists():  # hold the stage open until the test has seen its curve
        time.sleep(0.05)
    return epochs
'''


def _assert_drawn_while_running(proj, metric: str) -> None:
    """Start `run p`; while it runs (its stage waits for a release file), its report draws ``metric``."""
    from orchestrator.records import open_history, render_report

    proc = proj.start("run", "p")
    try:
        deadline, page = time.time() + 90, ""
        while time.time() < deadline:
            if (proj.root / "cache" / "runs.db").exists():
                with open_history(proj.root / "cache") as history:
                    runs = history.runs()
                    if runs and runs[0].status == "running":
                        page = render_report(history, runs[0])
                        if metric in page:
                            break
            time.sleep(0.2)
        metrics = page.split('id="metrics"')[1].split("</section>")[0] if 'id="metrics"' in page else ""
        assert metric in metrics and "<svg" in metrics, page[-2000:]
    finally:
        (proj.root / "release").write_text("")
        assert proc.wait(timeout=90) == 0


def test_a_running_stages_curve_is_in_its_report(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/s.py": STAGES, "params/p.yaml": "params: {}\n"})
    _assert_drawn_while_running(proj, "val_loss")


SCRIPT = '''
import time
from pathlib import Path

from orchestrator.external import is_rank_zero, log_metric, parse_args

args = parse_args(release=str)
if is_rank_zero():
    for epoch in range(3):
        log_metric("train_loss", 1.0 / (epoch + 1), step=epoch)
while not Path(args.release).exists():  # hold the script open until the test has seen its curve
    time.sleep(0.05)
if is_rank_zero():
    (Path(args.output_dir) / "model.txt").write_text("ok")
'''

TORCHRUN_STAGE = '''
from pathlib import Path

from orchestrator import stage


@stage(outputs=["model"])
def fit(ctx):
    return ctx.torchrun("external/train.py", args={"release": Path(ctx.project_root) / "release"},
                        outputs={"model": "model.txt"}, nproc_per_node=1, resume_arg=None)
'''


def test_a_torchrun_scripts_metrics_reach_the_report_while_it_runs(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/s.py": TORCHRUN_STAGE, "external/train.py": SCRIPT,
                         "params/p.yaml": "params: {}\n"})
    _assert_drawn_while_running(proj, "train_loss")

"""Training inside a stage: ctx.checkpoint / ctx.resume survive a crash; metrics show as the stage runs."""

from __future__ import annotations

from conftest import statuses

STAGE = '''
import os

from orchestrator import stage


@stage(outputs=["weights"])
def train(epochs: int = 5, ctx=None):
    state = ctx.resume(default={"epoch": -1, "w": 0.0})
    for epoch in range(state["epoch"] + 1, epochs):
        with open(os.environ["RUNS_LOG"], "a") as log:
            log.write(f"epoch {epoch}\\n")
        state = {"epoch": epoch, "w": state["w"] + epoch}
        ctx.metric("loss", 1.0 / (epoch + 1), step=epoch)
        ctx.checkpoint(state)
        if epoch == 2 and os.path.exists(os.environ["RUNS_LOG"] + ".crash"):
            raise RuntimeError("the machine went away")
    return state["w"]
'''


def test_a_crashed_training_resumes_from_its_last_checkpoint(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/s.py": STAGE, "params/p.yaml": "params: {}\n"})
    (proj.root / "runs.log.crash").write_text("")
    failed = proj.experiment("run", "p", check=1)
    assert "train [p] loss = 0.333333 (step 2)" in failed.stderr  # shown live, epoch by epoch
    assert proj.ran() == ["epoch", "0", "epoch", "1", "epoch", "2"]
    (proj.root / "runs.log.crash").unlink()
    proj.run_json("p")
    assert proj.ran() == ["epoch", "3", "epoch", "4"]  # not from epoch 0
    import orchestrator

    assert orchestrator.load("weights", params="p", project_dir=proj.root) == 0 + 1 + 2 + 3 + 4
    assert not any((proj.root / "cache").rglob("*.ctx-checkpoint"))  # the attempt folder went with success
    assert statuses(proj.run_json("p")) == {("train", "p"): "cached"}

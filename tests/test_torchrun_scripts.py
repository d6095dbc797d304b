"""`ctx.torchrun` runs existing training scripts unchanged: their argument names, their checkpoint folder.

The script below has the shape of a cookbook Lightning trainer: click options spelled with
underscores, no `--output-dir`, its own `model_checkpoints/` folder and a `--ckpt_path` to resume
from. It runs under torchrun (1 process, gloo) without edits, resumes after a crash, keeps the
folder it fills epoch by epoch across the resume, and is cached.
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import statuses

SCRIPT = '''
import os
import sys
from pathlib import Path

import click


@click.command()
@click.option("--dataset_path", required=True)
@click.option("--num_epochs", type=int, default=3)
@click.option("--ckpt_path", default="")
def main(dataset_path, num_epochs, ckpt_path):
    words = len(Path(dataset_path).read_text().split())
    start = int(Path(ckpt_path).read_text()) + 1 if ckpt_path else 0
    Path("model_checkpoints").mkdir(exist_ok=True)
    Path("state_dicts").mkdir(exist_ok=True)
    for epoch in range(start, num_epochs):
        Path(f"state_dicts/e{epoch}").write_text(str(epoch * words))
        Path(f"model_checkpoints/epoch={epoch}.ckpt").write_text(str(epoch))
        if epoch == 1 and os.path.exists(os.environ["CRASH_FILE"]):
            sys.exit("simulated crash after epoch 1")
    Path("model.txt").write_text(f"trained {num_epochs} epochs on {words} words (resumed: {bool(ckpt_path)})")


if __name__ == "__main__":
    main()
'''

STAGE = '''
from orchestrator import stage


@stage(outputs=["model", "states"])
def train(dataset_path: str = "data/corpus.txt", num_epochs: int = 3, ctx=None):
    return ctx.torchrun(
        "external/cookbook.py",
        args={"dataset_path": ctx.project_root / dataset_path, "num_epochs": num_epochs},
        outputs={"model": "model.txt", "states": "state_dicts"},
        output_dir_arg=None,              # the script writes where it runs
        resume_arg="--ckpt_path",         # given from the first launch ("" when there is none)
        checkpoints="model_checkpoints/*.ckpt",
        nproc_per_node=1, timeout=120,
    )
'''


def test_a_cookbook_trainer_runs_unchanged_resumes_from_its_own_checkpoints_and_is_cached(make_project):
    proj = make_project({
        "stages/__init__.py": "", "stages/s.py": STAGE, "external/cookbook.py": SCRIPT,
        "data/corpus.txt": "a b c d\n", "params/p.yaml": "params: {}\n",
    })
    crash = proj.root / "crash"
    crash.write_text("")
    os.environ["CRASH_FILE"] = str(crash)
    try:
        failed = proj.experiment("run", "p", check=1, timeout=240)
        assert "simulated crash after epoch 1" in failed.stdout + failed.stderr
        crash.unlink()
        proj.run_json("p")
        import orchestrator

        model = orchestrator.load("model", params="p", project_dir=proj.root)
        assert Path(model).read_text() == "trained 3 epochs on 4 words (resumed: True)"
        states = Path(orchestrator.load("states", params="p", project_dir=proj.root))
        assert sorted(p.name for p in states.iterdir()) == ["e0", "e1", "e2"]  # the first attempt's files kept
        assert statuses(proj.run_json("p")) == {("train", "p"): "cached"}
    finally:
        os.environ.pop("CRASH_FILE", None)

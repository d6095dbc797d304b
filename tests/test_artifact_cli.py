"""`experiment artifact NAME`: a stored artifact printed as a person wants to see it, or its path."""

from __future__ import annotations

import json
from pathlib import Path

STAGES = '''
import numpy as np
import pandas as pd

from orchestrator import stage


@stage(outputs=["scores"])
def score(lr: float):
    return {"accuracy": 1 - lr, "lr": lr}


@stage(outputs=["table"])
def table(lr: float):
    return pd.DataFrame({"step": range(30), "loss": [lr / (i + 1) for i in range(30)]})


@stage(outputs=["weights"])
def weights(lr: float):
    return np.full((4, 3), lr)
'''

FILES = {
    "stages/__init__.py": "",
    "stages/s.py": STAGES,
    "params/sweep.yaml": "params:\n  lr: 0.1\ngrid:\n  lr: [0.1, 0.5]\n",
}


def test_an_artifact_prints_by_its_type_and_asks_for_a_set_when_several_have_it(make_project):
    proj = make_project(FILES)
    proj.run_json("sweep")
    ambiguous = proj.experiment("artifact", "scores", check=None)
    assert ambiguous.returncode != 0
    assert "for 2 param sets: sweep[lr=0.1], sweep[lr=0.5]" in ambiguous.stderr and "--set NAME" in ambiguous.stderr

    shown = proj.experiment("artifact", "scores", "--set", "sweep[lr=0.5]").stdout
    assert json.loads(shown.split("\n", 1)[1]) == {"accuracy": 0.5, "lr": 0.5}
    frame = proj.experiment("artifact", "table", "--set", "sweep[lr=0.1]").stdout
    assert frame.startswith("DataFrame: 30 rows x 2 columns") and "… 20 more rows" in frame
    array = proj.experiment("artifact", "weights", "--set", "sweep[lr=0.1]").stdout
    assert array.startswith("array: shape (4, 3), dtype float64, min 0.1, max 0.1, mean 0.1")

    data = json.loads(proj.experiment("artifact", "table", "--set", "sweep[lr=0.5]", "--json").stdout)
    assert data["stage"] == "table" and data["set"] == "sweep[lr=0.5]" and len(data["value"]) == 30
    assert data["value"][0] == {"step": 0, "loss": 0.5}
    path = Path(proj.experiment("artifact", "weights", "--set", "sweep[lr=0.5]", "--path").stdout.strip())
    assert path.is_file() and path.resolve().is_relative_to((proj.root / "cache").resolve())

    unknown = proj.experiment("artifact", "score", check=None)
    assert unknown.returncode != 0 and "Did you mean 'scores'?" in unknown.stderr

"""Names derived from user strings stay under the file system's limit: a 14-param grid works."""

from __future__ import annotations

from conftest import statuses

NAMES = [f"hyperparameter_number_{i:02d}" for i in range(14)]


def test_a_fourteen_param_grid_runs_and_its_logs_have_bounded_readable_names(make_project):
    args = ", ".join(f"{n}: float = 0.0" for n in NAMES)
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": f"from orchestrator import stage\n\n\n@stage(outputs=['total'])\ndef a_stage_with_a_fairly_"
                       f"long_descriptive_name({args}, ctx=None):\n    print('working')\n"
                       f"    return sum([{', '.join(NAMES)}])\n",
        # every key a grid dimension: each set is named by all 14 (about 560 characters)
        "params/g.yaml": "grid:\n" + "".join(f"  {n}: [0.0012345, 0.0067891]\n" for n in NAMES[:2])
                         + "".join(f"  {n}: [0.00123456789]\n" for n in NAMES[2:]),
    })
    summary = proj.run_json("g")
    assert set(statuses(summary).values()) == {"ran"} and len(summary["nodes"]) == 4
    assert all(len(n["param_set"]) > 255 for n in summary["nodes"])
    logs = list((proj.root / "cache" / "runs").rglob("*.log"))
    assert len(logs) == 4 and all(len(p.name.encode()) <= 255 for p in logs)
    assert all(p.name.startswith("a_stage_with_a_fairly_long_descriptive_name@g[hyperparameter_number_00=") for p in logs)
    assert statuses(proj.run_json("g")) == {k: "cached" for k in statuses(summary)}

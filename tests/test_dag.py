"""Build-time errors: each names the stage/artifact and says how to fix it."""

from __future__ import annotations

import pytest

from orchestrator import aggregate, stage
from orchestrator.engine.dag import build_dag
from orchestrator.errors import (
    DefinitionError,
    ParamsError,
    UnknownCacherError,
    WiringError,
)
from orchestrator.keys.fingerprint import Fingerprinter
from orchestrator.project.params import ParamSet


def dag_of(stages, values=None, targets=None, sets=None):
    stages = {s.name: s for s in stages}
    fps = {n: Fingerprinter(__import__("pathlib").Path(__file__).parent).stage(s.fn) for n, s in stages.items()}
    sets = sets or [ParamSet("p", values or {}, "params/p.yaml")]
    return build_dag(stages, sets, fps, targets)


@stage(outputs=["raw"])
def load_raw():
    return 1


@stage(inputs=["raw"], outputs=["clean"])
def clean(raw, threshold: float = 0.5):
    return raw


def test_wires_by_artifact_name_per_param_set():
    dag = dag_of([load_raw, clean], sets=[ParamSet("a", {}), ParamSet("b", {"threshold": 0.1})])
    assert list(dag.nodes) == ["load_raw@a", "clean@a", "load_raw@b", "clean@b"]
    assert dag.nodes["clean@b"].params == {"threshold": 0.1}
    assert dag.upstream("clean@a") == ("load_raw@a",)


def test_missing_producer_suggests_the_close_name():
    @stage(inputs=["claen"], outputs=["model"])
    def fit(claen):
        return 1

    with pytest.raises(WiringError, match=r"stage 'fit' needs artifact 'claen'.*Did you mean 'clean'\?"):
        dag_of([load_raw, clean, fit])


def test_two_producers():
    @stage(outputs=["raw"], name="load_again")
    def other():
        return 2

    with pytest.raises(WiringError, match="produced by two stages, 'load_raw' and 'load_again'"):
        dag_of([load_raw, other])


def test_cycle_is_named():
    @stage(inputs=["b"], outputs=["a"])
    def sa(b):
        return b

    @stage(inputs=["a"], outputs=["b"])
    def sb(a):
        return a

    with pytest.raises(WiringError, match=r"cycle: (sa -> sb -> sa|sb -> sa -> sb)"):
        dag_of([sa, sb])


def test_missing_param_and_typo():
    @stage(outputs=["m"])
    def fit(learning_rate: float):
        return learning_rate

    with pytest.raises(ParamsError, match=r"defines 'learning_rat', which no stage takes.*Did you mean 'learning_rate'"):
        dag_of([fit], {"learning_rat": 0.1})
    with pytest.raises(ParamsError, match=r"takes param 'learning_rate', which param set 'p' .*does not define.*--set"):
        dag_of([fit], {})


def test_unknown_key_in_param_set():
    with pytest.raises(ParamsError, match=r"defines 'treshold', which no stage takes.*Did you mean 'threshold'"):
        dag_of([load_raw, clean], {"treshold": 0.2})


def test_wrong_param_type():
    with pytest.raises(ParamsError, match=r"'threshold' of stage 'clean' must be float.*'high' \(str\)"):
        dag_of([load_raw, clean], {"threshold": "high"})


def test_unknown_cacher():
    @stage(outputs=["m"], cachers={"m": "tourch"})
    def fit():
        return 1

    with pytest.raises(UnknownCacherError, match=r"unknown cacher 'tourch'.*Did you mean 'torch'\?"):
        dag_of([fit])


def test_unknown_target():
    with pytest.raises(WiringError, match=r"target 'claen'.*Did you mean 'clean'\?"):
        dag_of([load_raw, clean], targets=["claen"])


def test_aggregate_output_cannot_feed_a_per_set_stage():
    @aggregate(inputs=["clean"], outputs=["board"])
    def board(clean):
        return clean

    @stage(inputs=["board"], outputs=["x"])
    def after(board):
        return board

    with pytest.raises(WiringError, match="make the consumer an @aggregate"):
        dag_of([load_raw, clean, board, after])


def test_declaration_errors():
    with pytest.raises(DefinitionError, match="input 'x' is not a parameter"):
        stage(inputs=["x"], outputs=["y"])(lambda z: z)
    with pytest.raises(DefinitionError, match="not a valid artifact name"):
        stage(outputs=["../escape"])(lambda: 1)
    with pytest.raises(DefinitionError, match="declares no outputs"):
        stage(outputs=[])(lambda: 1)
    with pytest.raises(DefinitionError, match="annotated to return 3 values but declares 2"):

        @stage(outputs=["a", "b"])
        def two() -> tuple[int, int, int]:
            return 1, 2, 3

"""Config ergonomics: TOML files, !unset, typed builders, dotted reasons, tuple/list, parents, configs kept."""

from __future__ import annotations

import json

from conftest import statuses

STAGES = '''
from orchestrator import stage


@stage(outputs=["model"])
def fit(model: dict, sizes: tuple = (8, 4), lr: float = 0.1):
    return {"model": model, "sizes": list(sizes), "lr": lr}
'''


def _project(make_project, **files):
    return make_project({"stages/__init__.py": "", "stages/s.py": STAGES, **files})


def test_toml_param_files_extend_yaml_and_unset_removes_an_inherited_key(make_project):
    proj = _project(make_project, **{
        "params/base.yaml": "params:\n  model: {depth: 2, dropout: 0.1, norm: batch}\n",
        "params/lean.yaml": "extends: base\nparams:\n  model:\n    norm: !unset\n",
        "params/wide.toml": 'extends = "base"\n[params.model]\ndepth = 4\nnorm = "!unset"\n[grid]\nlr = [0.1, 0.2]\n',
    })
    lean = json.loads(proj.experiment("params", "lean", "--json").stdout)
    assert list(lean.values())[0]["model"] == {"depth": 2, "dropout": 0.1}
    wide = json.loads(proj.experiment("params", "wide", "--json").stdout)
    assert sorted(wide) == ["wide[lr=0.1]", "wide[lr=0.2]"]
    assert wide["wide[lr=0.1]"]["model"] == {"depth": 4, "dropout": 0.1}
    assert statuses(proj.run_json("wide"))[("fit", "wide[lr=0.2]")] == "ran"


def test_nested_changes_are_dotted_paths_and_a_tuple_default_equals_the_yaml_list(make_project):
    proj = _project(make_project, **{"params/p.yaml": "params:\n  model: {depth: 2, dropout: 0.1}\n"})
    proj.run_json("p")
    plan = " ".join(proj.experiment("plan", "p", "--set", "model.dropout=0.2", "--set", "sizes=[8, 4]").stdout.split())
    assert "param model.dropout 0.1 -> 0.2" in plan
    assert "sizes" not in plan  # (8, 4) as default and [8, 4] from YAML are the same value, the same key
    assert statuses(proj.run_json("p", "--set", "sizes=[8, 4]"))[("fit", "p")] == "cached"


def test_a_new_set_is_explained_against_the_file_it_extends(make_project):
    proj = _project(make_project, **{
        "params/base.yaml": "params:\n  model: {depth: 2}\n",
        "params/faster.yaml": "extends: base\nparams:\n  lr: 0.3\n",
    })
    proj.run_json("base")
    plan = " ".join(proj.experiment("plan", "faster").stdout.split())
    assert "no cached result; vs base: param lr 0.1 -> 0.3" in plan


def test_python_builders_may_return_dataclasses_and_their_configs_are_kept_with_the_run(make_project):
    proj = _project(make_project, **{
        "configs/model.toml": "depth = 3\n",
        "params/built.py": '''
import dataclasses
import tomllib
from pathlib import Path


@dataclasses.dataclass
class Run:
    name: str
    model: dict
    lr: float = 0.1


def get_params():
    model = tomllib.loads((Path(__file__).parent.parent / "configs" / "model.toml").read_text())
    return [Run("small", model), Run("fast", model, lr=0.5)]
''',
    })
    summary = proj.run_json("built")
    assert set(statuses(summary)) == {("fit", "small"), ("fit", "fast")}
    show = json.loads(proj.experiment("show", summary["run_id"], "--json").stdout)
    assert "configs/model.toml" in json.dumps(show)


def test_a_wrong_element_type_names_the_element(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": "from orchestrator import stage\n\n\n@stage(outputs=['o'])\ndef f(sizes: list[int]):\n"
                       "    return sizes\n",
        "params/p.yaml": "params:\n  sizes: [8, four, 2]\n",
    })
    proc = proj.experiment("run", "p", check=2)
    assert "param sizes[1] of stage 'f' must be int, but param set 'p' gives 'four'" in proc.stderr


def test_a_dataclass_builder_field_of_the_wrong_type_is_named(make_project):
    proj = _project(make_project, **{"params/built.py": '''
import dataclasses


@dataclasses.dataclass
class Run:
    name: str
    lr: float = 0.1
    sizes: list[int] = dataclasses.field(default_factory=lambda: [8, 4])


def get_params():
    return [Run("ok"), Run("bad", sizes=[8, "four"])]
'''})
    proc = proj.experiment("params", "built", check=2)
    assert "get_params()[1] (Run): field sizes[1] must be int, but it is 'four' (str)" in proc.stderr
    proj.write({"params/built.py": proj.root.joinpath("params/built.py").read_text().replace(
        'Run("bad", sizes=[8, "four"])', 'Run("bad", lr="fast")')})
    proc = proj.experiment("params", "built", check=2)
    assert "get_params()[1] (Run): field lr must be float, but it is 'fast' (str)" in proc.stderr


def test_pydantic_builders_are_converted_and_checked(make_project):
    proj = _project(make_project, **{"params/built.py": '''
from pydantic import BaseModel


class Model(BaseModel):
    depth: int = 2
    dropout: float = 0.1


class Run(BaseModel):
    name: str
    model: Model = Model()


def get_params():
    return [Run(name="small"), Run(name="deep", model=Model(depth=6))]
'''})
    sets = json.loads(proj.experiment("params", "built", "--json").stdout)
    assert sets["deep"]["model"] == {"depth": 6, "dropout": 0.1}
    assert statuses(proj.run_json("built"))[("fit", "deep")] == "ran"
    proj.write({"params/built.py": proj.root.joinpath("params/built.py").read_text().replace(
        "Model(depth=6)", 'Model(depth="six")')})
    proc = proj.experiment("params", "built", check=2)
    assert "get_params() raised ValidationError" in proc.stderr and "depth" in proc.stderr

"""A cached result is never stale: one case per way Python code reads what it depends on.

One project holds every case as its own module. It is run, every edit is applied, and it
is run again: a stage whose result changes must have rerun and produced the new value; a
stage whose result cannot change must stay cached. Each case failed on the fingerprint of
before this file (they are the classes of issue #14).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from conftest import statuses


@dataclass(frozen=True)
class Case:
    name: str
    modules: dict[str, str]  # stages/<name>_*.py files: text with "{name}" for the stage's name
    edits: tuple[tuple[str, str, str], ...]
    before: object
    after: object  # None: the stage must stay cached

    @property
    def files(self) -> dict[str, str]:
        return {f"stages/{path}": text for path, text in self.modules.items()}


STAGE = '''
from orchestrator import stage
from .record import record
{imports}

@stage(outputs=["{name}"])
def {name}({args}):
{body}
    return record("{name}", value)
'''


def stage_module(name: str, body: str, imports: str = "", args: str = "") -> str:
    indented = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return STAGE.format(name=name, body=indented, imports=imports, args=args)


CASES = [
    # 1. constants reached through a module attribute
    Case("module_attribute", {
        "c01_config.py": "FACTOR = 2\nOTHER = 1\n",
        "c01.py": stage_module("module_attribute", "value = c01_config.FACTOR * 10", "from . import c01_config"),
    }, (("c01_config.py", "FACTOR = 2", "FACTOR = 3"),), 20, 30),
    Case("dotted_module_attribute", {
        "c02_config.py": "FACTOR = 2\n",
        "c02.py": stage_module("dotted_module_attribute", "value = stages.c02_config.FACTOR", "import stages.c02_config"),
    }, (("c02_config.py", "FACTOR = 2", "FACTOR = 5"),), 2, 5),
    Case("unread_module_attribute", {
        "c03_config.py": "# settings\nFACTOR = 2\nOTHER = 1\n",
        "c03.py": stage_module("unread_module_attribute", "value = c03_config.FACTOR", "from . import c03_config"),
    }, (("c03_config.py", "OTHER = 1", "OTHER = 7"), ("c03_config.py", "# settings", "# the settings")), 2, None),
    # 2. labels that collided: two lambdas, a registry of lambdas, two closures of one factory
    Case("two_lambdas", {
        "c04.py": stage_module("two_lambdas", "value = double(1) + triple(1)",
                               "double = lambda x: 2 * x\ntriple = lambda x: 3 * x"),
    }, (("c04.py", "3 * x", "4 * x"),), 5, 6),
    Case("registry_of_lambdas", {
        "c05.py": stage_module("registry_of_lambdas", 'value = OPS["inc"](10)',
                               'OPS = {"inc": lambda x: x + 1, "dec": lambda x: x - 1}'),
    }, (("c05.py", "x + 1", "x + 3"),), 11, 13),
    Case("closures_of_one_factory", {
        "c06_ops.py": "def make_adder(n):\n    def add(x):\n        return x + n\n    return add\n\n\n"
                      "ADD2 = make_adder(2)\nADD3 = make_adder(3)\n",
        "c06.py": stage_module("closures_of_one_factory", "value = ADD2(0) * 10 + ADD3(0)",
                               "from .c06_ops import ADD2, ADD3"),
    }, (("c06_ops.py", "make_adder(2)", "make_adder(7)"),), 23, 73),
    # 3. scopes: a helper named like a builtin, a parameter named like a helper, imports in the body,
    #    an object with an `fn` attribute
    Case("helper_named_like_a_builtin", {
        "c07_util.py": "def filter(xs):\n    return [x for x in xs if x > 1]\n",
        "c07.py": stage_module("helper_named_like_a_builtin", "value = filter([1, 2, 3])",
                               "from .c07_util import filter"),
    }, (("c07_util.py", "x > 1", "x > 2"),), [2, 3], [3]),
    Case("parameter_named_like_a_helper", {
        "c08.py": stage_module("parameter_named_like_a_helper",
                               "pick = lambda scale: scale\nvalue = scale(pick(3))",
                               "def scale(x):\n    return x * 2\n\n\ndef other(scale):\n    return scale"),
    }, (("c08.py", "x * 2", "x * 3"),), 6, 9),
    Case("import_in_the_body", {
        "c09_consts.py": "LIMIT = 4\n",
        "c09.py": stage_module("import_in_the_body", "from .c09_consts import LIMIT\nvalue = LIMIT"),
    }, (("c09_consts.py", "LIMIT = 4", "LIMIT = 5"),), 4, 5),
    Case("module_imported_in_the_body", {
        "c10_consts.py": "LIMIT = 4\n",
        "c10.py": stage_module("module_imported_in_the_body", "import stages.c10_consts as c\nvalue = c.LIMIT"),
    }, (("c10_consts.py", "LIMIT = 4", "LIMIT = 6"),), 4, 6),
    Case("object_with_an_fn_attribute", {
        "c11.py": stage_module("object_with_an_fn_attribute", "value = BOX.fn()",
                               "class Box:\n    def __init__(self, fn):\n        self.fn = fn\n\n\nBOX = Box(lambda: 1)"),
    }, (("c11.py", "lambda: 1", "lambda: 2"),), 1, 2),
    # 4. constants that are not plain literals
    Case("tuple_unpacked_constant", {
        "c12.py": stage_module("tuple_unpacked_constant", "value = str(HIGH)",
                               "from fractions import Fraction\n\nLOW, HIGH = Fraction(1), Fraction(5)"),
    }, (("c12.py", "Fraction(5)", "Fraction(7)"),), "5", "7"),
    Case("constant_in_a_try_block", {
        "c13.py": stage_module("constant_in_a_try_block", "value = str(LIMIT)",
                               "from fractions import Fraction\n\ntry:\n    import does_not_exist_anywhere\n"
                               "except ImportError:\n    LIMIT = Fraction(3)"),
    }, (("c13.py", "Fraction(3)", "Fraction(4)"),), "3", "4"),
    Case("imported_under_another_name", {
        "c14_consts.py": "from fractions import Fraction\n\nX = Fraction(1)\n",
        "c14.py": stage_module("imported_under_another_name", "value = str(Y)", "from .c14_consts import X as Y"),
    }, (("c14_consts.py", "Fraction(1)", "Fraction(2)"),), "1", "2"),
    Case("constant_computed_from_a_constant", {
        "c15.py": stage_module("constant_computed_from_a_constant", "value = float(GRID.sum())",
                               "import numpy as np\nN_POINTS = 3\nGRID = np.linspace(0, 1, N_POINTS)"),
    }, (("c15.py", "N_POINTS = 3", "N_POINTS = 5"),), 1.5, 2.5),
    Case("class_attribute_computed_from_a_constant", {
        "c16.py": stage_module("class_attribute_computed_from_a_constant", "value = Cfg.factor",
                               "BASE = 2\n\n\nclass Cfg:\n    factor = BASE * 3"),
    }, (("c16.py", "BASE = 2", "BASE = 4"),), 6, 12),
    # 5. a wrapper applied by a call, with and without functools.wraps
    Case("wrapper_applied_by_a_call", {
        "c17.py": stage_module("wrapper_applied_by_a_call", "value = clipped(100)",
                               "import functools\n\n\ndef clip_at(limit):\n    def deco(fn):\n"
                               "        @functools.wraps(fn)\n        def inner(x):\n"
                               "            return min(fn(x), limit)\n        return inner\n    return deco\n\n\n"
                               "def double(x):\n    return 2 * x\n\n\nclipped = clip_at(10)(double)"),
    }, (("c17.py", "clip_at(10)", "clip_at(20)"),), 10, 20),
    Case("functools_wraps_wrapper", {
        "c18.py": stage_module("functools_wraps_wrapper", "value = double(3)",
                               "import functools\n\n\ndef plus(k):\n    def deco(fn):\n        @functools.wraps(fn)\n"
                               "        def inner(x):\n            return fn(x) + k\n        return inner\n    return deco\n\n\n"
                               "@plus(1)\ndef double(x):\n    return 2 * x"),
    }, (("c18.py", "@plus(1)", "@plus(2)"),), 7, 8),
    # 6. ctx read by a helper under another name
    Case("seed_read_by_a_helper", {
        "c19.py": stage_module("seed_read_by_a_helper", "value = seed_of(ctx) > 0",
                               "def seed_of(run_ctx):\n    return run_ctx.seed", args="ctx"),
    }, (("../params/p.yaml", "seed: 1", "seed: 2"),), True, True),
    # 8. a dict constant's order is part of the code
    Case("reordered_dict_constant", {
        "c20.py": stage_module("reordered_dict_constant", "value = list(WEIGHTS)", 'WEIGHTS = {"a": 1, "b": 2}'),
    }, (("c20.py", '{"a": 1, "b": 2}', '{"b": 2, "a": 1}'),), ["a", "b"], ["b", "a"]),
    # 10. a parameter defaulting to a function is code
    Case("function_default", {
        "c21.py": stage_module("function_default", "value = op(3)", "def double(x):\n    return 2 * x",
                               args="op=double"),
    }, (("c21.py", "2 * x", "3 * x"),), 6, 9),
    # a value with no deterministic encoding: its whole module stands in for it
    Case("unhashable_value", {
        "c22.py": stage_module("unhashable_value", "with LOCK:\n    value = OFFSET", "import threading\n\n"
                               "LOCK = threading.Lock()\nOFFSET = 1\n\n\ndef unrelated():\n    return 0"),
    }, (("c22.py", "return 0", "return 1"),), 1, 1),
    # what a class statement reads: a dataclass field's default factory, a class decorator's argument
    Case("dataclass_default_factory", {
        "c24.py": stage_module("dataclass_default_factory", "value = Settings().sizes",
                               "import dataclasses\n\n\ndef default_sizes():\n    return [1, 2]\n\n\n"
                               "@dataclasses.dataclass\nclass Settings:\n"
                               "    sizes: list = dataclasses.field(default_factory=default_sizes)"),
    }, (("c24.py", "return [1, 2]", "return [1, 3]"),), [1, 2], [1, 3]),
    # globals read by a computed name, a module named in a string
    Case("globals_by_name", {
        "c25.py": stage_module("globals_by_name", 'value = globals()["LIMIT_" + "A"]', "LIMIT_A = 1"),
    }, (("c25.py", "LIMIT_A = 1", "LIMIT_A = 2"),), 1, 2),
    Case("module_named_in_a_string", {
        "c26_consts.py": "SIZE = 3\n",
        "c26.py": stage_module("module_named_in_a_string",
                               'value = importlib.import_module("stages.c26_consts").SIZE',
                               "import importlib"),
    }, (("c26_consts.py", "SIZE = 3", "SIZE = 4"),), 3, 4),
    # a module imported in the body and used as a value (read by a computed name): all of it counts
    Case("module_in_the_body_used_as_a_value", {
        "c27_cfg.py": "K = 1\nOTHER = 2\n",
        "c27.py": stage_module("module_in_the_body_used_as_a_value",
                               'from . import c27_cfg as cfg\nvalue = vars(cfg)["K"]'),
    }, (("c27_cfg.py", "K = 1", "K = 3"),), 1, 3),
    Case("partial_and_fraction", {
        "c23.py": stage_module("partial_and_fraction", "value = str(SCALE(Fraction(1, 2)))",
                               "import functools\nimport operator\nfrom fractions import Fraction\n\n"
                               "SCALE = functools.partial(operator.mul, Fraction(2, 3))"),
    }, (("c23.py", "Fraction(2, 3)", "Fraction(4, 3)"),), "1/3", "2/3"),
]

RECORD = '''
import json
import os


def record(name, value):
    with open(os.environ["RESULTS"], "a") as handle:
        handle.write(json.dumps([name, value]) + "\\n")
    return value
'''


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    """Run every case, apply every edit, run again: (first values, second values, second statuses, plan)."""
    from conftest import Project, write_files

    root = tmp_path_factory.mktemp("keys") / "proj"
    files = {"stages/__init__.py": "", "stages/record.py": RECORD, "params/p.yaml": "params:\n  seed: 1\n"}
    for case in CASES:
        files.update(case.files)
    write_files(root, files)
    proj = Project(root)
    results = root / "results.jsonl"
    import os

    os.environ["RESULTS"] = str(results)
    try:
        proj.run_json("p")
        first = dict(json.loads(line) for line in results.read_text().splitlines())
        results.unlink()
        for case in CASES:
            for path, old, new in case.edits:
                proj.edit(f"stages/{path}", old, new)
        plan = proj.experiment("plan", "p").stdout
        second = proj.run_json("p")
        values = dict(json.loads(line) for line in results.read_text().splitlines()) if results.exists() else {}
    finally:
        os.environ.pop("RESULTS", None)
    return first, values, {stage: status for (stage, _), status in statuses(second).items()}, plan, proj


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_an_edit_reruns_exactly_what_it_changes(outcome, case):
    first, second, status, _, _ = outcome
    assert first[case.name] == case.before
    if case.after is None:
        assert status[case.name] == "cached", f"{case.name} reran for an edit that cannot change it"
    else:
        assert status[case.name] == "ran", f"{case.name} was served stale from the cache"
        assert second[case.name] == case.after


def test_plan_and_explain_say_where_a_whole_module_stands_in_for_a_value(outcome):
    plan = " ".join(outcome[3].split())
    assert "stages.c22 (whole module: LOCK could not be hashed" in plan
    assert "note: unhashable_value: code: stages.c22 (whole module" in plan
    assert "note: two_lambdas" not in plan  # only where it happened
    explained = " ".join(outcome[4].experiment("explain", "unhashable_value").stdout.split())
    assert "key is conservative: code: stages.c22 (whole module: LOCK could not be hashed" in explained


def test_the_library_beside_the_stages_is_not_project_code(tmp_path):
    """A project that holds `orchestrator/` itself (this repository): editing the library reruns nothing."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    root = tmp_path / "repo"
    shutil.copytree(repo / "orchestrator", root / "orchestrator", ignore=shutil.ignore_patterns("__pycache__"))
    from conftest import write_files

    write_files(root, {
        "stages/__init__.py": "",
        "stages/s.py": '''
            import orchestrator.keys.hashing
            from orchestrator import stage


            @stage(outputs=["digest"])
            def digest():
                return orchestrator.keys.hashing.hash_bytes(b"x")
        ''',
        "params/p.yaml": "params: {}\n",
    })
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("ORCHESTRATOR_CACHE_DIR", None)

    def run() -> dict:
        proc = subprocess.run([sys.executable, "-m", "orchestrator", "run", "p", "--json"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    run()
    hashing = root / "orchestrator" / "keys" / "hashing.py"
    hashing.write_text(hashing.read_text().replace(
        "    return xxhash.xxh3_128_hexdigest(data)\n", "    result = xxhash.xxh3_128_hexdigest(data)\n    return result\n", 1))
    assert "result = xxhash" in hashing.read_text()
    assert statuses(run()) == {("digest", "p"): "cached"}


def test_a_function_given_as_a_param_value_is_a_usage_error_with_the_fix(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": '''
            from orchestrator import stage


            def double(x):
                return 2 * x


            @stage(outputs=["out"])
            def produce(op=double):
                return op(3)
        ''',
        "params/p.py": "import math\n\n\ndef get_params():\n    return [{'name': 'a', 'op': math.sqrt}]\n",
    })
    proc = proj.experiment("run", "p", check=2)
    assert "param 'op' of param set 'a' (stage 'produce') is 'sqrt', a function or class" in proc.stderr
    assert "Traceback" not in proc.stderr


SCRIPT_STAGE = '''
from orchestrator import stage


@stage(outputs=["model"])
def fit(ctx=None):
    return ctx.torchrun("external/train.py", outputs={"model": "model.pt"}, nproc_per_node=1)
'''

MODELS = '''
SIZE = 4


class MLP:
    width = SIZE

    def forward(self, x):
        return x * self.width


class Transformer:
    heads = 8
'''


def _fit_key(proj) -> str:
    plan = json.loads(proj.experiment("plan", "p", "--json").stdout)
    return next(d["key"] for d in plan if d["stage"] == "fit")


def test_a_script_is_keyed_by_what_it_uses_of_a_shared_module(make_project):
    """Editing one model class in a shared module does not retrain a script that uses another."""
    for import_line, use in (("from stages.models import MLP", "MLP"), ("import stages.models as m", "m.MLP")):
        proj = make_project({
            "stages/__init__.py": "", "stages/s.py": SCRIPT_STAGE, "stages/models.py": MODELS,
            "external/train.py": f"{import_line}\n\nprint({use}().forward(2))\n", "params/p.yaml": "params: {}\n",
        })
        before = _fit_key(proj)
        proj.edit("stages/models.py", "heads = 8", "heads = 16")
        assert _fit_key(proj) == before, import_line  # Transformer: not used by the script
        proj.edit("stages/models.py", "SIZE = 4", "SIZE = 5")
        assert _fit_key(proj) != before, import_line  # MLP reads SIZE
        proj.edit("stages/models.py", "SIZE = 5", "SIZE = 4")
        proj.edit("stages/models.py", "return x * self.width", "return x + self.width")
        assert _fit_key(proj) != before, import_line
        import shutil

        shutil.rmtree(proj.root)

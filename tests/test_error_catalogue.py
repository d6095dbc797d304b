"""The catalogue of mistakes: each gives exit 2 (usage) or 1 (failed run), one clear paragraph
naming the file/line, stage, artifact or param and the fix, and no traceback without --debug."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import ParamsError
from orchestrator.project.params import load_experiment, parse_override

GOOD = "from orchestrator import stage\n\n@stage(outputs=['a'])\ndef make(n: int = 1):\n    return n\n"
EXTERNAL = ("from orchestrator import stage\n\n@stage(outputs=['ckpt'])\ndef train(ctx):\n"
            "    return ctx.torchrun('external/{}', outputs={{'ckpt': 'model.ckpt'}}, nproc_per_node=1, timeout=120)\n")
LAMBDAS = ("from orchestrator import stage\n\n@stage(outputs=['fns'], cachers={'fns': 'pickle'})\ndef fns():\n"
           "    return [lambda x: x]\n\n@stage(inputs=['fns'], outputs=['used'], map_over='fns')\ndef use(fns):\n"
           "    return 1\n")

# (id, files to write over the standard project, command, exit code, substrings of the message)
CASES = [
    ("unknown-set", {}, ["run", "bsae"], 2, ["no param file 'bsae'", "Did you mean 'base'?"]),
    ("malformed-yaml", {"params/bad.yaml": "params:\n  n: [1, 2\n"}, ["run", "bad"], 2, ["bad.yaml:3:1", "malformed YAML"]),
    ("extends-cycle", {"params/x.yaml": "extends: y\n", "params/y.yaml": "extends: x\n"}, ["run", "x"], 2,
     ["extends cycle: x -> y -> x"]),
    ("unknown-top-key", {"params/t.yaml": "parms: {n: 1}\n"}, ["run", "t"], 2, ["unknown top-level key 'parms'", "Did you mean 'params'?"]),
    ("unknown-param", {"params/u.yaml": "params: {scael: 2}\n"}, ["run", "u"], 2, ["defines 'scael', which no stage takes", "Did you mean 'scale'?"]),
    ("wrong-type", {"params/w.yaml": "params: {scale: big}\n"}, ["run", "w"], 2, ["'scale' of stage 'double_all' must be int", "'big'"]),
    ("set-bad-path", {"params/o.yaml": "params: {scale: 1}\n"}, ["run", "o", "--set", "scale.x=1"], 2, ["'scale' is 1, not a mapping"]),
    ("set-bad-value", {}, ["run", "base", "--set", "scale=[1,"], 2, ["not valid YAML", "Quote it"]),
    ("set-no-equals", {}, ["run", "base", "--set", "scale"], 2, ["expected KEY=VALUE"]),
    ("set-typo", {}, ["run", "base", "--set", "scael=2"], 2, ["--set scael=...", "Did you mean 'scale'?"]),
    ("set-grid-dimension", {}, ["run", "grid", "--set", "scale=3"], 2, ["scale is a grid dimension"]),
    ("grid-not-list", {"params/g.yaml": "grid:\n  scale: 2\n"}, ["run", "g"], 2, ["grid: scale must be a non-empty list"]),
    ("duplicate-sets", {"params/d.yaml": "sets:\n  - {name: a}\n  - {name: a}\n"}, ["run", "d"], 2, ["'a' appears twice"]),
    ("set-without-name", {"params/n.yaml": "sets:\n  - {scale: 2}\n"}, ["run", "n"], 2, ["sets[0] must be a mapping with a string name"]),
    ("missing-producer", {"stages/extra.py": "from orchestrator import stage\n\n@stage(inputs=['nmubers'], outputs=['z'])\ndef z(nmubers):\n    return 1\n"},
     ["run", "base"], 2, ["stage 'z' needs artifact 'nmubers'", "Did you mean 'numbers'?"]),
    ("two-producers", {"stages/extra.py": "from orchestrator import stage\n\n@stage(outputs=['numbers'])\ndef again():\n    return []\n"},
     ["run", "base"], 2, ["'numbers' is produced by two stages", "rename the output"]),
    ("cycle", {"stages/extra.py": "from orchestrator import stage\n\n@stage(inputs=['q'], outputs=['p'])\ndef sp(q):\n    return q\n\n@stage(inputs=['p'], outputs=['q'])\ndef sq(p):\n    return p\n"},
     ["run", "base"], 2, ["stages form a cycle"]),
    ("unknown-cacher", {"stages/extra.py": "from orchestrator import stage\n\n@stage(outputs=['e'], cachers={'e': 'jsn'})\ndef e():\n    return 1\n"},
     ["run", "base"], 2, ["stage 'e', output 'e'", "unknown cacher 'jsn'", "Did you mean 'json'?"]),
    ("bad-artifact-name", {"stages/extra.py": "from orchestrator import stage\n\n@stage(outputs=['../escape'])\ndef e():\n    return 1\n"},
     ["run", "base"], 2, ["'../escape' is not a valid artifact name", "no path separators"]),
    ("input-not-parameter", {"stages/extra.py": "from orchestrator import stage\n\n@stage(inputs=['numbers'], outputs=['e'])\ndef e(numbrs):\n    return 1\n"},
     ["run", "base"], 2, ["input 'numbers' is not a parameter", "Did you mean 'numbrs'?"]),
    ("map-over-not-input", {"stages/extra.py": "from orchestrator import stage\n\n@stage(inputs=['numbers'], outputs=['e'], map_over='numbres')\ndef e(numbers):\n    return 1\n"},
     ["run", "base"], 2, ["map_over='numbres' is not one of its inputs", "Did you mean 'numbers'?"]),
    ("missing-param", {"stages/extra.py": "from orchestrator import stage\n\n@stage(outputs=['e'])\ndef e(learning_rate: float):\n    return 1\n"},
     ["run", "base"], 2, ["takes param 'learning_rate'", "--set learning_rate=VALUE"]),
    ("missing-module", {"stages/extra.py": "import notinstalledpackage\n"}, ["run", "base"], 2,
     ["imports 'notinstalledpackage', which is not installed", "pip install notinstalledpackage"]),
    ("syntax-error", {"stages/extra.py": "def broken(:\n    pass\n"}, ["run", "base"], 2, ["stages.extra", "SyntaxError"]),
    ("import-raises", {"stages/extra.py": "x = 1\nraise RuntimeError('config missing')\n"}, ["run", "base"], 2,
     ["stages/extra.py:2", "config missing"]),
    ("unknown-target", {}, ["run", "base", "--target", "totl"], 2, ["target 'totl'", "Did you mean 'total'?"]),
    ("unknown-force", {}, ["run", "base", "--force", "shfit"], 2, ["--force 'shfit'", "Did you mean 'shift'?"]),
    ("unknown-executor", {}, ["run", "base", "--executor", "daks"], 2, ["unknown executor 'daks'", "Did you mean 'dask'?"]),
    ("bad-shard", {}, ["run", "base", "--shard", "3/2"], 2, ["I must be between 1 and N"]),
    ("python-params-no-function", {"params/py.py": "SETS = []\n"}, ["run", "py"], 2, ["defines no get_params()"]),
    ("wrong-output-count", {"stages/extra.py": "from orchestrator import stage\n\n@stage(outputs=['l', 'r'])\ndef two():\n    return 1\n"},
     ["run", "base", "--target", "l"], 1, ["declares 2 outputs ['l', 'r'] but returned one int", "Fix: return a tuple"]),
    ("not-serializable", {"stages/extra.py": "from orchestrator import stage\n\n@stage(outputs=['s'], cachers={'s': 'json'})\ndef s():\n    return {1, 2}\n"},
     ["run", "base", "--target", "s"], 1, ["output 's' (set) could not be stored with cacher 'json'", "cachers={'s': 'pickle'}"]),
    ("map-over-dict", {"stages/extra.py": "from orchestrator import stage\n\n@stage(outputs=['d'])\ndef d():\n    return {'a': 1}\n\n@stage(inputs=['d'], outputs=['m'], map_over='d')\ndef m(d):\n    return d\n"},
     ["run", "base", "--target", "m"], 1, ["maps over 'd', which is a dict, not a sequence"]),
    ("stage-raises", {"stages/extra.py": "from orchestrator import stage\n\n@stage(outputs=['f'])\ndef f():\n    raise ValueError('no data for 2019')\n"},
     ["run", "base", "--target", "f"], 1, ["FAILED f [base]", "ValueError: no data for 2019", "resume with"]),
    ("cacher-fails-on-load", {"stages/extra.py": (
        "from orchestrator import Cacher, register_cacher, stage\n\n"
        "class Broken(Cacher):\n    name = 'broken'\n    def save(self, obj, path):\n        path.write_text('x')\n"
        "    def load(self, path):\n        raise IOError('cannot parse')\n\nregister_cacher(Broken)\n\n"
        "@stage(outputs=['b'], cachers={'b': 'broken'})\ndef b():\n    return 1\n\n"
        "@stage(inputs=['b'], outputs=['c'])\ndef c(b):\n    return b\n")},
     ["run", "base", "--target", "c"], 1, ["input 'b' could not be loaded with cacher 'broken'", "cannot parse"]),
    ("script-missing", {"stages/extra.py": EXTERNAL.format("nope.py")}, ["run", "base", "--target", "ckpt"], 1,
     ["FAILED train [base]", "external/nope.py does not exist", "Fix: create the script"]),
    ("script-exits-1", {"stages/extra.py": EXTERNAL.format("fail.py"),
                        "external/fail.py": "import sys\nsys.exit('no training data in data/train')\n"},
     ["run", "base", "--target", "ckpt"], 1, ["FAILED train [base]", "exited with code 1", "no training data",
                                              "Fix: correct the script"]),
    ("script-exits-0-without-output", {"stages/extra.py": EXTERNAL.format("noop.py"), "external/noop.py": "print('done')\n"},
     ["run", "base", "--target", "ckpt"], 1, ["exited 0 but declared output 'ckpt' (model.ckpt) is missing", "Fix: write"]),
    ("map-item-not-sendable", {"stages/extra.py": LAMBDAS}, ["run", "base", "--target", "used", "--workers", "2"], 1,
     ["map stage 'use': item 0 of 'fns' (function) cannot be sent to worker processes", "Fix:"]),
    ("map-stage-in-a-function", {"stages/extra.py": (
        "from orchestrator import stage\n\ndef make():\n    @stage(inputs=['numbers'], outputs=['m'], map_over='numbers')\n"
        "    def inner(numbers):\n        return numbers\n    return inner\n\nmapped = make()\n")},
     ["run", "base", "--target", "m"], 1, ["map stage 'inner' is defined inside a function", "define it at module level"]),
    ("duplicate-yaml-key", {"params/dk.yaml": "params:\n  n: 5\n  scale: 1\n  n: 6\n"}, ["run", "dk"], 2,
     ["dk.yaml:4", "key 'n' appears twice (lines 2 and 4)", "Fix: keep one"]),
    ("bad-stage-name", {"stages/extra.py": "from orchestrator import stage\n\n\n@stage(outputs=['e'], name='../../escaped')\ndef e():\n    return 1\n"},
     ["run", "base"], 2, ["stages/extra.py:4", "'../../escaped' is not a valid stage name"]),
    ("bad-artifact-name-site", {"stages/extra.py": "from orchestrator import stage\n\n\n@stage(outputs=['a b'])\ndef e():\n    return 1\n"},
     ["run", "base"], 2, ["stages/extra.py:4", "'a b' is not a valid artifact name"]),
    ("star-args", {"stages/extra.py": "from orchestrator import stage\n\n\n@stage(outputs=['e'])\ndef e(*args):\n    return 1\n"},
     ["run", "base"], 2, ["stages/extra.py:4", "*args/**kwargs are not supported"]),
    ("decorated-twice", {"stages/extra.py": "from orchestrator import stage\n\n\n@stage(outputs=['f'])\n@stage(outputs=['e'])\ndef e():\n    return 1\n"},
     ["run", "base"], 2, ["stages/extra.py:4", "decorated twice"]),
    ("bad-cachers", {"stages/extra.py": "from orchestrator import stage\n\n\n@stage(outputs=['e'], cachers='pickle')\ndef e():\n    return 1\n"},
     ["run", "base"], 2, ["stages/extra.py:4", "must map output names to cacher names"]),
    ("generator-stage", {"stages/extra.py": "from orchestrator import stage\n\n\n@stage(outputs=['e'])\ndef e():\n    yield 1\n"},
     ["run", "base"], 2, ["stages/extra.py:4", "generator function", "Fix: return a list"]),
    ("async-stage", {"stages/extra.py": "from orchestrator import stage\n\n\n@stage(outputs=['e'])\nasync def e():\n    return 1\n"},
     ["run", "base"], 2, ["stages/extra.py:4", "async def", "asyncio.run"]),
    ("method-stage", {"stages/extra.py": "from orchestrator import stage\n\n\nclass Pipeline:\n    @stage(outputs=['e'])\n    def e(self):\n        return 1\n"},
     ["run", "base"], 2, ["stages/extra.py:5", "method of 'Pipeline'", "module level"]),
    ("same-name-twice", {"stages/extra.py": "from orchestrator import stage\n\n\n@stage(outputs=['e'])\ndef e():\n    return 1\n\n\n@stage(outputs=['f'])\ndef e():\n    return 2\n"},
     ["run", "base"], 2, ["two stages are named 'e' in stages.extra (lines 4 and 9)"]),
    ("missing-path-output", {"stages/extra.py": "from pathlib import Path\nfrom orchestrator import stage\n\n@stage(outputs=['p'])\ndef p():\n    return Path('/nonexistent/file.txt')\n"},
     ["run", "base", "--target", "p"], 1, ["output 'p' is the path /nonexistent/file.txt, which does not exist"]),
]


@pytest.mark.parametrize(("files", "args", "code", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_gives_a_clear_message_and_exit_code(project, files, args, code, expected):
    project.write(files)
    proc = project.experiment(*args, check=code)
    text = proc.stderr + proc.stdout
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert "Traceback (most recent call last)" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 6, proc.stderr  # one paragraph, not a dump


def test_catalogue_is_at_least_thirty_cases():
    assert len(CASES) >= 30


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_any_param_file_gives_sets_or_a_params_error(tmp_path, text):
    (tmp_path / "fuzz.yaml").write_text(text)
    try:
        experiment = load_experiment(tmp_path, ["fuzz"])
    except ParamsError:
        return
    assert all(isinstance(s.values, dict) for s in experiment.sets)


yaml_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["params", "grid", "sets", "extends", "name", "lr", "stages", "targets"]), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(yaml_like)
def test_any_structured_param_file_gives_sets_or_a_params_error(tmp_path, doc):
    import yaml

    (tmp_path / "fuzz.yaml").write_text(yaml.safe_dump(doc))
    try:
        load_experiment(tmp_path, ["fuzz"])
    except ParamsError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_set_text_parses_or_gives_a_params_error(text):
    try:
        key, _ = parse_override(text)
    except ParamsError:
        return
    assert key and all(key.split("."))


def test_a_param_file_that_is_not_utf8_names_the_file_and_the_byte(project):
    (project.root / "params" / "latin.yaml").write_bytes("params:\n  n: 5\n  who: Zo\xeb\n".encode("latin-1"))
    proc = project.experiment("run", "latin", check=2)
    assert "latin.yaml: not UTF-8 text: byte 24 (line 3)" in proc.stderr
    assert "Param files must be UTF-8" in proc.stderr and "Traceback" not in proc.stderr


def test_a_bad_environment_gives_one_paragraph_never_a_traceback(project, tmp_path):
    """Deleted working directory, a malformed setting, params nested too deep, a full stdout."""
    import subprocess

    from conftest import EXPERIMENT

    gone = tmp_path / "gone"
    gone.mkdir()
    proc = subprocess.run(f"cd {gone} && rmdir {gone} && {' '.join(EXPERIMENT)} plan base", shell=True,
                          capture_output=True, text=True, env=project.env(), timeout=60)
    assert proc.returncode == 2 and "working directory no longer exists" in proc.stderr, proc.stderr
    env = {**project.env(), "ORCHESTRATOR_STORAGE_OPTIONS": "{not json"}
    bad = subprocess.run([*EXPERIMENT, "run", "base", "--cache-dir", "s3://bucket/x"], cwd=project.root, env=env,
                         capture_output=True, text=True, timeout=60)
    assert "Traceback" not in bad.stderr and bad.returncode == 2, bad.stderr
    env = {**project.env(), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1",
           "ORCHESTRATOR_STORAGE_OPTIONS": '{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}'}
    down = subprocess.run([*EXPERIMENT, "run", "base", "--cache-dir", "s3://bucket/x"], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 1 and "cannot reach the artifact store" in down.stderr, down.stderr[-2000:]
    assert "Traceback" not in down.stderr
    (project.root / "params" / "deep.yaml").write_text("params:\n  n: " + "[" * 5000 + "]" * 5000 + "\n")
    deep = project.experiment("run", "deep", check=2)
    assert "nested deeper than can be read" in deep.stderr
    with open("/dev/full", "w") as full:
        out = subprocess.run([*EXPERIMENT, "params", "base"], cwd=project.root, env=project.env(), stdout=full,
                             stderr=subprocess.PIPE, text=True, timeout=60)
    assert out.returncode == 1 and "could not write the output to stdout" in out.stderr
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr

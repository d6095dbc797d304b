"""Write the core benchmark workloads as real projects: one for `experiment`, one for curifactory.

Both projects of a workload hold the same stages doing the same (tiny) work on the same
param sets, so a timing difference is the tools' overhead, not the stages':

* stage ``i`` reads the output of stage ``i-1`` (a chain) or of stages ``i-1`` and ``i-2``
  (a ladder DAG), adds the set's ``offset`` param and returns a small int, pickled by both
  tools;
* every param set differs in ``offset``, so no two nodes share a result.

The big-artifact workload (a numpy array through two stages) has only an `experiment` side;
its baseline is :data:`RAW_NUMPY_SCRIPT`, plain ``np.save`` + ``np.load`` of the same array.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RAW_NUMPY_SCRIPT",
    "Shape",
    "write_big_artifact_project",
    "write_curifactory_project",
    "write_orchestrator_project",
]

MODULUS = 1_000_003  # keeps every value a small int, whatever the chain length


@dataclass(frozen=True)
class Shape:
    """A synthetic DAG: ``stages`` stages instantiated for each of ``sets`` param sets.

    Attributes:
        sets: Number of param sets (each with its own ``offset``).
        stages: Stages per param set.
        ladder: When true, stage ``i`` also reads stage ``i-2``'s output (a DAG, not a chain).
    """

    sets: int
    stages: int
    ladder: bool = False

    @property
    def nodes(self) -> int:
        """Stage executions in a cold run."""
        return self.sets * self.stages

    def inputs(self, index: int) -> list[str]:
        """Artifact names stage ``index`` reads, nearest first."""
        back = (1, 2) if self.ladder else (1,)
        return [artifact(index - step) for step in back if index - step >= 0]

    def set_names(self) -> list[str]:
        """Param-set names, as `experiment` names grid combinations."""
        return [f"bench[offset={i}]" for i in range(self.sets)]


def artifact(index: int) -> str:
    """The name of stage ``index``'s output."""
    return f"a{index:05d}"


def stage_name(index: int) -> str:
    """The name of stage ``index``."""
    return f"s{index:05d}"


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# -- experiment (orchestrator) --------------------------------------------------------------
def write_orchestrator_project(root: Path, shape: Shape) -> Path:
    """Write ``shape`` as an `experiment` project: run it with ``experiment run bench``."""
    blocks = ['"""Generated benchmark stages."""\n\nfrom orchestrator import stage\n']
    for index in range(shape.stages):
        inputs = shape.inputs(index)
        decorator = f"@stage(inputs={inputs!r}, outputs=[{artifact(index)!r}])" if inputs else (
            f"@stage(outputs=[{artifact(index)!r}])"
        )
        args = ", ".join([*inputs, "offset: int"])
        total = " + ".join([*inputs, "offset", "1"])
        blocks.append(f"\n{decorator}\ndef {stage_name(index)}({args}):\n    return ({total}) % {MODULUS}\n")
    offsets = ", ".join(str(i) for i in range(shape.sets))
    return _write(root, {
        "stages/__init__.py": '"""Generated benchmark project."""\n',
        "stages/bench.py": "\n".join(blocks),
        "params/bench.yaml": f"grid:\n  offset: [{offsets}]\n",
    })


# -- curifactory --------------------------------------------------------------------------
def write_curifactory_project(root: Path, shape: Shape) -> Path:
    """Write ``shape`` as a curifactory project: run it with ``experiment bench -p bench``."""
    blocks = [textwrap.dedent('''\
        """Generated benchmark stages."""

        from dataclasses import dataclass

        import curifactory as cf
        from curifactory.caching import PickleCacher


        @dataclass
        class Params(cf.ExperimentParameters):
            offset: int = 0
        ''')]
    for index in range(shape.stages):
        inputs = shape.inputs(index)
        args = ", ".join(["record", *inputs])
        total = " + ".join([*inputs, "record.params.offset", "1"])
        blocks.append(
            f"\n@cf.stage(inputs={inputs!r}, outputs=[{artifact(index)!r}], cachers=[PickleCacher])\n"
            f"def {stage_name(index)}({args}):\n    return ({total}) % {MODULUS}\n"
        )
    pipeline = ", ".join(stage_name(i) for i in range(shape.stages))
    blocks.append(f"\nPIPELINE = [{pipeline}]\n")
    experiment = textwrap.dedent('''\
        """Generated benchmark experiment: every stage, in order, for each param set."""

        import curifactory as cf

        from stages.bench import PIPELINE


        def run(param_sets, manager):
            for params in param_sets:
                record = cf.Record(manager, params)
                for stage in PIPELINE:
                    stage(record)
        ''')
    params = textwrap.dedent(f'''\
        """Generated benchmark param sets."""

        from stages.bench import Params


        def get_params():
            return [Params(name=f"bench[offset={{i}}]", offset=i) for i in range({shape.sets})]
        ''')
    return _write(root, {
        "stages/__init__.py": "",
        "stages/bench.py": "\n".join(blocks),
        "experiments/__init__.py": "",
        "experiments/bench.py": experiment,
        "params/__init__.py": "",
        "params/bench.py": params,
        "curifactory_config.json": json.dumps({"experiments_module_name": "experiments",
                                               "params_module_name": "params"}, indent=1),
    })


# -- a big numpy artifact -----------------------------------------------------------------
BIG_STAGES = '''\
"""Generated benchmark stages: one big array, made then read."""

import numpy as np

from orchestrator import stage


@stage(outputs=["big"])
def make_big(mib: int):
    return np.arange(mib * 2**20 // 8, dtype=np.float64)


@stage(inputs=["big"], outputs=["probe"])
def consume(big):
    return float(big[::4096].sum())
'''

RAW_NUMPY_SCRIPT = '''\
"""The baseline: the same array through plain np.save and np.load, nothing else."""

import sys

import numpy as np

mib, path = int(sys.argv[1]), sys.argv[2]
big = np.arange(mib * 2**20 // 8, dtype=np.float64)
with open(path, "wb") as handle:
    np.save(handle, big, allow_pickle=False)
del big
big = np.load(path, allow_pickle=False)
print(float(big[::4096].sum()))
'''


def write_big_artifact_project(root: Path, mib: int) -> Path:
    """Write the big-artifact workload (``mib`` MiB of float64) as an `experiment` project."""
    return _write(root, {
        "stages/__init__.py": '"""Generated benchmark project."""\n',
        "stages/bench.py": BIG_STAGES,
        "params/bench.yaml": f"params:\n  mib: {mib}\n",
        "raw_numpy.py": RAW_NUMPY_SCRIPT,
    })

"""Random small projects for the differential key test: helper graphs in the shapes research code takes.

A project is a list of definitions spread over two modules (constants, functions, lambdas,
closures made by a factory, classes with an attribute and a method, functions that import
inside their body, registry dicts) and one stage that calls some of them. Each definition
holds one number an edit can change; each may use earlier definitions, from its own module by
name or from the other module through a module attribute (``m1.C3``) or an import in the body.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import strategies as st

KINDS = ("const", "func", "lambda", "closure", "class", "body_import", "registry", "tuple_const")


@dataclass(frozen=True)
class Definition:
    kind: str
    module: int  # 0 or 1
    number: int
    uses: tuple[int, ...]  # indexes of earlier definitions
    via_attribute: bool  # reach the other module's definitions as m1.NAME (else: imported in the body)


def name(index: int, d: Definition) -> str:
    return {"const": "C", "func": "f", "lambda": "L", "closure": "F", "class": "K", "body_import": "g",
            "registry": "R", "tuple_const": "T"}[d.kind] + str(index)


def call(index: int, defs: list[Definition], where: int, argument: str = "x") -> tuple[str, str]:
    """An expression using definition ``index`` from module ``where``, and the import it needs (if any)."""
    d = defs[index]
    own = name(index, d)
    prefix, body_import = "", ""
    if d.module != where:
        if d.kind in ("const", "tuple_const") or d.via_attribute:
            prefix = f"m{d.module}."
        else:
            body_import = f"from .m{d.module} import {own}"
    ref = prefix + own
    expression = {
        "const": ref,
        "tuple_const": f"{ref}[1]",
        "func": f"{ref}({argument})",
        "lambda": f"{ref}({argument})",
        "closure": f"{ref}({argument})",
        "class": f"{ref}().apply({argument})",
        "body_import": f"{ref}({argument})",
        "registry": f'{ref}["b"]({argument})',
    }[d.kind]
    return expression, body_import


def source(defs: list[Definition], stage_uses: tuple[int, ...]) -> dict[str, str]:
    """The project's files."""
    modules = {0: ["from . import m1\n"], 1: ["from . import m0\n"]}
    for index, d in enumerate(defs):
        uses = [call(u, defs, d.module) for u in d.uses]
        imports = [imp for _, imp in uses if imp]
        terms = " + ".join(expr for expr, _ in uses) or "0"
        own = name(index, d)
        k = d.number
        if d.kind == "const":
            text = f"{own} = {k}\n"
        elif d.kind == "tuple_const":
            text = f"_unused, {own}_1 = 0, {k}\n{own} = (0, {own}_1)\n"
        elif d.kind == "func":
            text = _function(own, imports, f"x * {k} + {terms}")
        elif d.kind == "body_import":
            other = 1 - d.module
            text = _function(own, [*imports, f"from .m{other} import SHARED{other}"], f"x + {k} * SHARED{other} + {terms}")
        elif d.kind == "lambda":
            text = f"{own} = lambda x: x - {k} + ({terms} if x < 1000 else 0)\n" if not imports else \
                _function(f"_{own}", imports, f"x - {k} + {terms}") + f"{own} = lambda x: _{own}(x)\n"
        elif d.kind == "closure":
            inner = "\n".join(f"        {i}" for i in imports)
            text = (f"def make_{own}(n):\n    def inner(x):\n{inner + chr(10) if inner else ''}"
                    f"        return x * n + {terms}\n    return inner\n\n\n{own} = make_{own}({k})\n")
        elif d.kind == "class":
            inner = "\n".join(f"        {i}" for i in imports)
            text = (f"class {own}:\n    factor = {k}\n\n    def apply(self, x):\n{inner + chr(10) if inner else ''}"
                    f"        return x * self.factor + {terms}\n")
        else:  # registry
            text = _function(f"_{own}_b", imports, f"x + {k} + {terms}") + \
                f'{own} = {{"a": lambda x: x, "b": _{own}_b}}\n'
        modules[d.module].append(text)
    for m in (0, 1):
        modules[m].append(f"SHARED{m} = {m + 2}\n")
    expressions = [call(u, defs, 2) for u in stage_uses]
    imports = [imp.replace("from .m", "from stages.m") for _, imp in expressions if imp]
    body = " + ".join(expr for expr, _ in expressions)
    stage = ["from orchestrator import stage\n", "from stages import m0, m1\n\n\n", '@stage(outputs=["out"])\n',
             "def result():\n", *(f"    {i}\n" for i in imports), f"    x = 1\n    return {body or 0}\n"]
    return {
        "stages/__init__.py": "",
        "stages/m0.py": "\n\n".join(modules[0]),
        "stages/m1.py": "\n\n".join(modules[1]),
        "stages/s.py": "".join(stage),
    }


def _function(own: str, imports: list[str], expression: str) -> str:
    lines = [f"def {own}(x):"] + [f"    {i}" for i in imports] + [f"    return {expression}"]
    return "\n".join(lines) + "\n"


@st.composite
def projects(draw: st.DrawFn) -> tuple[list[Definition], tuple[int, ...], int, int]:
    """(definitions, what the stage uses, which definition an edit changes, its new number)."""
    count = draw(st.integers(2, 8))
    defs: list[Definition] = []
    for index in range(count):
        uses = tuple(sorted(draw(st.sets(st.integers(0, index - 1), max_size=2)))) if index else ()
        defs.append(Definition(draw(st.sampled_from(KINDS)), draw(st.integers(0, 1)), draw(st.integers(1, 9)),
                               uses, draw(st.booleans())))
    stage_uses = tuple(sorted(draw(st.sets(st.integers(0, count - 1), min_size=1, max_size=3))))
    edited = draw(st.integers(0, count - 1))
    number = draw(st.integers(1, 9).filter(lambda n: n != defs[edited].number))
    return defs, stage_uses, edited, number


def edit(defs: list[Definition], index: int, number: int) -> list[Definition]:
    changed = list(defs)
    changed[index] = replace(defs[index], number=number)
    return changed

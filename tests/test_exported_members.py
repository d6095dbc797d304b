"""The public API is exactly this list; changing it is a deliberate act."""

import orchestrator


def test_public_api_is_pinned():
    assert orchestrator.__all__ == [
        "ArtifactNotCached",
        "Cacher",
        "Data",
        "DefinitionError",
        "Executor",
        "OrchestratorError",
        "ParamsError",
        "RunResult",
        "Stage",
        "StageContext",
        "StageFailed",
        "Status",
        "StoreError",
        "UsageError",
        "aggregate",
        "files",
        "load",
        "open_session",
        "plan",
        "register_cacher",
        "register_executor",
        "run",
        "stage",
    ]
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None


def test_example_project_imports_only_the_public_api():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    for path in [*root.glob("stages/*.py"), *root.glob("external/*.py")]:
        for match in re.finditer(r"from orchestrator(\.[\w.]+)? import ([\w, ]+)", path.read_text()):
            module, names = match.groups()
            if module == ".external":
                continue
            assert module is None, f"{path.name} imports from orchestrator{module}"
            for name in names.split(","):
                # `external` is the public script-side helper module for external scripts
                assert name.strip() in [*orchestrator.__all__, "external"], f"{path.name} imports {name.strip()}"

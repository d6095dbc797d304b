"""What a search run leaves behind: its summary (for the report and the CLI) and the Optuna study.

The summary is ``search.json`` beside the run's report: every trial (number, param set, state,
value, params), the best one, and Optuna's parameter importances. The study itself is copied to
``<cache>/search.db`` (Optuna's SQLite storage) under ``NAME-IDENTITY``, where ``optuna-dashboard``
or ``optuna.load_study`` find it; each run replaces it with the study as re-told from the cache.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engine.outcomes import RunResult

logger = logging.getLogger(__name__)

__all__ = ["save", "summary_of"]


def summary_of(feed: Any, run_id: str) -> dict[str, Any]:
    """The study of ``feed`` (a :class:`~orchestrator.search.study.SearchFeed`) as plain data: trials, best
    trial, importances."""
    import optuna

    spec = feed.spec
    trials = []
    for t in feed.study.trials:
        finished = t.state == optuna.trial.TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
        trials.append({"number": t.number, "set": t.user_attrs.get("set", ""), "state": t.state.name.lower(),
                       "value": t.value if finished else None,  # (a pruned trial's is an intermediate value)
                       "params": dict(t.params), "steps": len(t.intermediate_values),
                       "last_step": max(t.intermediate_values, default=None)})
    complete = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
    best = (max if spec.direction == "maximize" else min)(complete, key=lambda t: t["value"]) if complete else None
    importances: dict[str, float] = {}
    if len(complete) >= 2 and len(spec.space) >= 1:
        try:
            importances = {k: float(v) for k, v in optuna.importance.get_param_importances(
                feed.study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=spec.seed)).items()}
        except Exception as exc:  # noqa: BLE001 - too few distinct trials, a constant objective: no importances
            logger.info("no parameter importances: %s", exc)
    return {"name": feed.search.name, "identity": feed.search.identity, "run_id": run_id, "metric": spec.metric,
            "direction": spec.direction, "sampler": spec.sampler, "pruner": spec.pruner, "seed": spec.seed,
            "planned": spec.trials, "trials": trials, "best": best, "importances": importances}


def save(feed: Any, result: RunResult) -> Path:
    """Write the summary beside the run's report and the study to ``<cache>/search.db``; returns the summary."""
    import optuna

    summary = summary_of(feed, result.run_id)
    path = feed.summary_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    storage = f"sqlite:///{feed.storage_path}"
    name = f"{feed.search.name}-{feed.search.identity}"
    try:
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass
        optuna.copy_study(from_study_name=feed.study.study_name, from_storage=feed.study._storage,
                          to_storage=storage, to_study_name=name)
    except Exception as exc:  # noqa: BLE001 - a locked or unwritable database: the summary is what matters
        logger.warning("could not save the Optuna study to %s: %s", storage, exc)
    return path

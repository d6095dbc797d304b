"""What a search run leaves behind: its summary (for the report and the CLI) and the Optuna study.

The summary is ``search.json`` beside the run's report: every trial (number, param set, state,
value, params), the best one, and Optuna's parameter importances. The study itself is copied to
``<cache>/search/NAME-IDENTITY.optuna`` (Optuna's journal storage) under ``NAME-IDENTITY``, where
``optuna-dashboard`` or ``optuna.load_study`` find it; each run replaces it with the study as
re-told from the cache. (A journal, not SQLite: copying 100 trials into Optuna's SQLite storage
takes about 2 s here, the journal 0.04 s.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..keys.hashing import hash_struct

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
    return {"name": feed.search.name, "identity": feed.search.identity, "run_id": run_id, "metric": spec.metric,
            "direction": spec.direction, "sampler": spec.sampler, "pruner": spec.pruner, "seed": spec.seed,
            "planned": spec.trials, "trials": trials, "best": best,
            "importances": _importances(feed, complete)}


def _importances(feed: Any, complete: list[dict[str, Any]]) -> dict[str, float]:
    """Optuna's fANOVA importances, computed again only when the finished trials changed.

    Importing them costs about 1.2 s (scikit-learn), computing them about 0.5 s per 100 trials:
    the last result is kept beside the trial log, keyed by the trials it was computed from.
    """
    if len(complete) < 2:
        return {}
    digest = hash_struct(["Importances", [[t["number"], t["params"], t["value"]] for t in complete]])
    cache = feed.log.path.with_suffix(".importances.json")
    try:
        kept = json.loads(cache.read_text(encoding="utf-8"))
        if kept.get("digest") == digest:
            return dict(kept["importances"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    helper = getattr(feed, "importances", None)
    try:
        if helper is not None:  # a process that imported scikit-learn while the trials ran
            found = helper.submit(importances_of, feed.study.trials, feed.spec.direction, feed.spec.seed).result()
        else:
            found = importances_of(feed.study.trials, feed.spec.direction, feed.spec.seed)
    except Exception as exc:  # noqa: BLE001 - too few distinct trials, a constant objective: no importances
        logger.info("no parameter importances: %s", exc)
        return {}
    with contextlib.suppress(OSError):
        cache.write_text(json.dumps({"digest": digest, "importances": found}), encoding="utf-8")
    return found


def importances_of(trials: list[Any], direction: str, seed: int) -> dict[str, float]:
    """Optuna's fANOVA importances of these (frozen) trials."""
    import optuna

    study = optuna.create_study(direction=optuna.study.StudyDirection[direction.upper()])
    study.add_trials(trials)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}


def warm_up() -> None:
    """Import what :func:`importances_of` needs (in a helper process, while the trials run)."""
    import optuna.importance  # noqa: F401  (scikit-learn: about 1.2 s)


def save(feed: Any, result: RunResult) -> Path:
    """Write the summary beside the run's report and the study where Optuna's tools read it; returns the summary."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    summary = summary_of(feed, result.run_id)
    path = feed.summary_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    target = feed.storage_path
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:  # the study as re-told from the cache, in a journal of its own (replaced whole: it never grows)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.unlink(missing_ok=True)
        optuna.copy_study(from_study_name=feed.study.study_name, from_storage=feed.study._storage,
                          to_storage=JournalStorage(JournalFileBackend(str(staged))),
                          to_study_name=f"{feed.search.name}-{feed.search.identity}")
        os.replace(staged, target)
    except Exception as exc:  # noqa: BLE001 - an unwritable folder: the summary is what the report needs
        logger.warning("could not save the Optuna study to %s: %s", target, exc)
        staged.unlink(missing_ok=True)
    return path

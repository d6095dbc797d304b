"""The trials a search has asked for, kept beside the run records: the study's memory across runs.

One JSON line per trial, appended (and synced) before the trial runs, in
``<cache>/search/<name>-<identity>.jsonl``. The log, not Optuna's storage, is what a later
``experiment run`` starts from: every trial in it is a param set of the experiment again (its
stages cached, or resumed where a killed run stopped, or re-scored when the evaluation changed),
and is told to a fresh Optuna study with the value it has now.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..project.params import Experiment, ParamSet, apply_override
from ..project.searchspace import Search

logger = logging.getLogger(__name__)

__all__ = ["Trial", "TrialLog", "trial_set", "with_trials"]


@dataclass(frozen=True)
class Trial:
    """One asked trial: its number in the study, the values of the searched params and, once the
    pruner stopped it, the intermediate values it had reported (step -> value)."""

    number: int
    params: Mapping[str, Any]
    pruned: Mapping[int, float] | None = None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_set(search: Search, trial: Trial) -> ParamSet:
    """The param set of a trial: the search's fixed params with the trial's values (dotted keys nest)."""
    values: Mapping[str, Any] = dict(search.values)
    for key, value in trial.params.items():
        values = apply_override(values, key, value, where=f"search {search.name!r} trial {trial.number}")
    label = ",".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    return ParamSet(f"{search.name}-{trial.number}[{label}]", values, source=search.source,
                    overridden=search.overridden)


def with_trials(experiment: Experiment, root: Path) -> Experiment:
    """A search's experiment with its param sets: the trials asked so far (those the pruner stopped aside)."""
    search = experiment.search
    if search is None:
        return experiment
    return replace(experiment, sets=tuple(trial_set(search, t) for t in TrialLog(root, search).read()
                                          if t.pruned is None))


class TrialLog:
    """The append-only list of a study's trials (a torn last line, from a kill, is ignored)."""

    def __init__(self, root: Path, search: Search) -> None:
        self.path = Path(root) / "search" / f"{search.name}-{search.identity}.jsonl"

    def read(self) -> list[Trial]:
        """Every trial asked so far, by number."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        trials: dict[int, Trial] = {}
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                number = int(entry["number"])
                if "pruned" in entry:
                    steps = {int(k): float(v) for k, v in dict(entry["pruned"]).items()}
                    trials[number] = Trial(number, trials[number].params, steps)
                else:
                    trials[number] = Trial(number, dict(entry["params"]))
            except (ValueError, KeyError, TypeError):
                logger.warning("%s: ignoring a damaged line %r", self.path, line[:120])
        return [trials[n] for n in sorted(trials)]

    def append(self, trials: list[Trial]) -> None:
        """Remember ``trials`` before they run (a kill right after loses none; a power cut may lose the
        last ones, which the next run asks again: the same trials, as the sampler is seeded by number)."""
        self._write([{"number": t.number, "params": dict(t.params)} for t in trials])

    def pruned(self, trial: Trial, intermediate: Mapping[int, float]) -> None:
        """Remember that the pruner stopped ``trial``: a later run does not train it again."""
        self._write([{"number": trial.number, "pruned": {str(k): v for k, v in intermediate.items()}}])

    def _write(self, entries: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as log:
            log.seek(0, os.SEEK_END)
            torn = False
            if log.tell():
                log.seek(-1, os.SEEK_END)
                torn = log.read(1) != b"\n"  # a line cut by a kill: start on a line of our own
            text = ("\n" if torn else "") + "".join(json.dumps(e) + "\n" for e in entries)
            log.write(text.encode("utf-8"))

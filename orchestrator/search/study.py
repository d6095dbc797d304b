"""A search run: Optuna asks for trials, each trial is a param set of the run, the cache does the rest.

:class:`SearchFeed` is the driver's :class:`~orchestrator.engine.feed.NodeFeed` and a run observer:

* The trials of earlier runs (:class:`~orchestrator.search.trials.TrialLog`) are the run's first
  param sets. Their stages are cached (or resumed where a killed run stopped, or re-run where
  their code changed: editing the evaluation re-scores every trial without retraining), and each
  is told to a fresh Optuna study with the value it has now.
* Then new trials are asked in waves of ``parallel``: a wave starts when the one before it has
  been told, so the same seed gives the same trials however long each took, and a run killed
  mid-wave resumes to the same study. Each trial's sampler is seeded by the study's seed and the
  trial's number.
* While a trial's stages run, the objective's intermediate values (``ctx.metric(name, v, step=)``,
  ``log_metric`` from a torchrun script) reach the pruner; a pruned trial's stage is asked to stop
  (a marker file its ``ctx.metric`` and torchrun follower watch) and is recorded as ``pruned``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.context import live_metrics_path, prune_marker_path
from ..engine.dag import Dag
from ..engine.outcomes import NodeOutcome, RunObserver, RunResult, Status
from ..project.params import ParamSet
from ..project.searchspace import Search, SearchSpec
from ..records.values import final_metrics
from .trials import Trial, TrialLog, trial_set

logger = logging.getLogger(__name__)

__all__ = ["SearchFeed", "objective_of"]

_BROKEN = (Status.FAILED, Status.SKIPPED, Status.INTERRUPTED, Status.SHARDED)
POLL_EVERY = 0.25  # seconds between reads of the running trials' live metrics


@dataclass
class _Open:
    """A trial being computed: its Optuna trial, the nodes of its set and what they reported."""

    trial: Trial
    optuna_trial: Any
    nodes: set[str]
    outcomes: list[NodeOutcome] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)  # live metrics file -> bytes read
    reported: dict[int, float] = field(default_factory=dict)  # step -> intermediate value told to Optuna
    pruned: bool = False


def objective_of(spec: SearchSpec, outcomes: Sequence[NodeOutcome]) -> float | None:
    """The objective of a finished trial: the metric's final value, from the most downstream stage reporting it."""
    found: float | None = None
    for outcome in outcomes:
        if spec.stage and outcome.stage != spec.stage:
            continue
        finals = final_metrics(outcome.extras or {})
        if spec.metric in finals:
            found = finals[spec.metric]
        else:
            suffixed = [v for k, v in finals.items() if k.endswith("." + spec.metric)]
            found = suffixed[-1] if suffixed else found
    return found


def _steps(spec: SearchSpec, outcome: NodeOutcome) -> dict[int, float]:
    return {int(e["step"]): float(e["value"]) for e in (outcome.extras or {}).get("metrics", ())
            if e.get("name") == spec.watched and e.get("step") is not None}


def make_sampler(spec: SearchSpec, number: int) -> Any:
    """The sampler that asks trial ``number`` (seeded by the study's seed and the number)."""
    import optuna

    seed = (spec.seed * 1_000_003 + number) % 2**32
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=spec.seed)  # its sequence is indexed by the trial number
    if spec.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=spec.startup_trials)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials)


def make_pruner(spec: SearchSpec) -> Any:
    """The pruner the block names (``none``: never prune)."""
    import optuna

    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    if spec.pruner == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=spec.startup_trials,
                                               n_warmup_steps=spec.pruner_warmup_steps)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if spec.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.pruner_warmup_steps)


class SearchFeed(RunObserver):
    """Asks Optuna for trials, hands their DAGs to the driver, tells Optuna how each ended.

    Args:
        search: The param file's search.
        known: The trials of earlier runs (the log's), in number order.
        dag: The run's DAG at the start (the known trials' sets, pruned ones left out).
        build: Builds the DAG of new param sets.
        log: The trial log (new trials are appended before they run).
        parallel: Trials asked per wave.
        log_path: A node's log file in this run (its live metrics and prune marker sit beside it).
        summary_path: Where the run's summary goes (beside its report).
        storage_path: The SQLite file the study is copied to at the end.
    """

    def __init__(self, search: Search, known: Sequence[Trial], dag: Dag, build: Callable[[list[ParamSet]], Dag],
                 log: TrialLog, parallel: int, log_path: Callable[[str], Path], summary_path: Path,
                 storage_path: Path) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.search, self.spec, self.build, self.log = search, search.spec, build, log
        self.parallel, self.log_path = max(1, parallel), log_path
        self.summary_path, self.storage_path = summary_path, storage_path
        self.importances: ProcessPoolExecutor | None = None  # computes them at the end, imported meanwhile
        self._lock = threading.Lock()  # the watcher thread reads what the driver's thread changes
        self._stopping = threading.Event()
        self.study = optuna.create_study(direction=optuna.study.StudyDirection[self.spec.direction.upper()], pruner=make_pruner(self.spec),
                                         sampler=make_sampler(self.spec, 0))
        self.distributions = {d.name: d.distribution() for d in self.spec.space}
        self.open: dict[str, _Open] = {}  # set name -> trial in flight
        self.sets: dict[int, str] = {}  # trial number -> its set's name
        self.next = max((t.number for t in known), default=-1) + 1
        by_set: dict[str, set[str]] = {}
        for node in dag.nodes.values():
            by_set.setdefault(node.param_set, set()).add(node.id)
        for trial in known:
            name = trial_set(search, trial).name
            self.sets[trial.number] = name
            optuna_trial = self._enqueued(trial)
            if trial.pruned is not None:  # stopped by the pruner in an earlier run: told as it was, not retrained
                for step, value in sorted(trial.pruned.items()):
                    optuna_trial.report(value, step)
                self.study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
            else:
                self.open[name] = _Open(trial, optuna_trial, set(by_set.get(name, ())))
        self._watcher = threading.Thread(target=self._watch, name="orchestrator-search-pruner", daemon=True)
        if self.spec.pruner != "none":  # a thread: the local executor runs a stage in the driver's own thread
            self._watcher.start()

    @property
    def told(self) -> int:
        """Trials that have ended (complete, pruned or failed)."""
        return sum(1 for t in self.study.trials if t.state.is_finished())

    def _enqueued(self, trial: Trial) -> Any:
        self.study.enqueue_trial(dict(trial.params))
        optuna_trial = self.study.ask(self.distributions)
        optuna_trial.set_user_attr("set", trial_set(self.search, trial).name)
        return optuna_trial

    # -- the driver's feed -----------------------------------------------------------------------
    def more(self) -> Sequence[Dag]:
        with self._lock:
            return self._more()

    def _more(self) -> Sequence[Dag]:
        if self.open or self.next >= self.spec.trials:
            return ()
        wave: list[Trial] = []
        for _ in range(min(self.parallel, self.spec.trials - self.next)):
            self.study.sampler = make_sampler(self.spec, self.next)
            optuna_trial = self.study.ask(self.distributions)
            trial = Trial(self.next, dict(optuna_trial.params))
            optuna_trial.set_user_attr("set", trial_set(self.search, trial).name)
            wave.append(trial)
            self.open[trial_set(self.search, trial).name] = _Open(trial, optuna_trial, set())
            self.next += 1
        self.log.append(wave)  # before they run: a killed run resumes these very trials
        if self.importances is None and self.spec.trials > 1:  # new trials: the importances will change
            self._start_helper()
        sets = [trial_set(self.search, t) for t in wave]
        dag = self.build(sets)
        for node in dag.nodes.values():
            self.open[node.param_set].nodes.add(node.id)
        for trial, param_set in zip(wave, sets):
            self.sets[trial.number] = param_set.name
            logger.info("trial %d: %s", trial.number, ", ".join(f"{k}={v!r}" for k, v in trial.params.items()))
        return (dag,)

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_EVERY):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the pruner is an aid: a bad line must not end the search
                logger.exception("the search's pruner failed to read the trials' metrics")

    def poll(self) -> None:
        """Tell the pruner the objective's new intermediate values of every trial in flight; stop the bad ones."""
        with self._lock:
            watched = [(current, nid) for current in self.open.values() if not current.pruned
                       for nid in list(current.nodes)]
        for current, nid in watched:
            steps = self._new_steps(current, nid)  # (read outside the lock: files)
            with self._lock:  # (told under it: the driver's thread may be closing this very trial)
                if current.pruned or not any(o is current for o in self.open.values()):
                    continue
                for step, value in steps:
                    if step in current.reported:
                        continue
                    current.reported[step] = value
                    current.optuna_trial.report(value, step)
                    if current.optuna_trial.should_prune():
                        current.pruned = True
                        logger.warning("trial %d pruned at step %d (%s = %.6g): stopping it",
                                       current.trial.number, step, self.spec.watched, value)
                        prune_marker_path(self.log_path(nid)).touch()
                        break

    def _new_steps(self, current: _Open, nid: str) -> list[tuple[int, float]]:
        path = live_metrics_path(self.log_path(nid))
        offset = current.offsets.get(nid, 0)
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        current.offsets[nid] = offset + len(complete)
        found = []
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("name") == self.spec.watched and entry.get("step") is not None:
                found.append((int(entry["step"]), float(entry["value"])))
        return found

    # -- run observer ----------------------------------------------------------------------------
    def node_finished(self, outcome: NodeOutcome) -> None:
        with self._lock:
            current = self.open.get(outcome.param_set)
            if current is None:
                return
            current.outcomes.append(outcome)
            current.nodes.discard(outcome.node)
            if outcome.status is Status.PRUNED or outcome.status in _BROKEN or not current.nodes:
                self._close(current, outcome)

    def _close(self, current: _Open, last: NodeOutcome) -> None:
        import optuna

        name = self.sets[current.trial.number]
        del self.open[name]
        if last.status is Status.INTERRUPTED:
            return  # the run ends; the next one resumes this trial
        for outcome in current.outcomes:  # intermediate values of cached stages: the pruner compares against them
            for step, value in sorted(_steps(self.spec, outcome).items()):
                if step not in current.reported:
                    current.reported[step] = value
                    current.optuna_trial.report(value, step)
        states = optuna.trial.TrialState
        if last.status is Status.PRUNED:
            self.log.pruned(current.trial, current.reported)
            self.study.tell(current.optuna_trial, state=states.PRUNED)
            return
        if last.status in _BROKEN:
            logger.warning("trial %d (%s) failed: %s did not finish", current.trial.number, name, last.stage)
            self.study.tell(current.optuna_trial, state=states.FAIL)
            return
        found = objective_of(self.spec, current.outcomes)
        if found is None:
            logger.warning("trial %d (%s): no stage reported %r; counted as failed. Fix: report it with "
                           "ctx.metric(%r, value) or in a metrics= output%s.", current.trial.number, name,
                           self.spec.metric, self.spec.metric, f" of {self.spec.stage}" if self.spec.stage else "")
            self.study.tell(current.optuna_trial, state=states.FAIL)
            return
        self.study.tell(current.optuna_trial, found)

    def run_finished(self, result: RunResult) -> None:
        """Leave the study where a dashboard finds it (``<cache>/search.db``), and its summary for the report."""
        from .summary import save

        self._stopping.set()
        if self._watcher.is_alive():
            self._watcher.join()
        try:
            save(self, result)
        finally:
            if self.importances is not None:
                self.importances.shutdown(wait=False, cancel_futures=True)

    def _start_helper(self) -> None:
        """A process that imports scikit-learn (for the importances) while the trials run, not after."""
        from ..processes import forkserver
        from .summary import warm_up

        try:
            self.importances = ProcessPoolExecutor(1, mp_context=forkserver())
            self.importances.submit(warm_up)
        except (OSError, RuntimeError) as exc:  # no process to spare: compute them here at the end
            logger.info("importances will be computed in this process: %s", exc)
            self.importances = None

"""The Python API: open a project's experiment, plan it, run it, load its artifacts.

The CLI is a thin layer over these functions; notebooks call them directly::

    import orchestrator
    result = orchestrator.run("baseline", overrides={"lr": 0.1})
    board = orchestrator.load("leaderboard", params="sweep")
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.dag import ALL, Dag, build_dag
from .engine.driver import Observers, RunObserver, RunResult
from .engine.options import RunOptions
from .engine.run import execute_dag, new_run_id

if TYPE_CHECKING:
    from .engine.admission import Ledger
    from .records.compare import Comparison
    from .search.study import SearchFeed
from .engine.planner import Action, Plan, make_plan
from .errors import ArtifactNotCached, CorruptObjectError, UsageError, did_you_mean
from .executors import executor_class, get_executor
from .keys.fingerprint import CodeFingerprint, Fingerprinter
from .project.datadeps import Manifests
from .project.declaration import Stage
from .project.loader import Project, collect_stages, find_project, import_modules
from .project.params import Experiment, ParamSet, load_experiment
from .store.artifactio import load_artifact
from .store.base import Store
from .store.codedigests import CodeDigests
from .store.location import open_store

logger = logging.getLogger(__name__)

__all__ = ["Session", "load", "open_session", "plan", "run"]

Names = str | Sequence[str]
Overrides = Sequence[str] | Mapping[str, Any]


@dataclass(frozen=True)
class Session:
    """A project with its param sets resolved and its DAG built, ready to plan or run."""

    project: Project
    experiment: Experiment
    stages: Mapping[str, Stage]
    fingerprints: Mapping[str, CodeFingerprint]
    dag: Dag
    store: Store
    build: Callable[[Sequence[ParamSet]], Dag] | None = None  # the DAG of further param sets (a search's trials)
    save_code: Callable[[], None] | None = None  # keeps the code digests in the store (once a run has made it)

    def plan(self, force: Sequence[str] = ()) -> Plan:
        """Decide every node against the store, without running anything."""
        self._check_forced(force)
        return make_plan(self.dag, self.fingerprints, self.store, force)

    def run(
        self,
        *,
        force: Sequence[str] = (),
        executor: str = "local",
        executor_options: Mapping[str, Any] | None = None,
        keep_going: bool = False,
        observer: RunObserver | None = None,
        run_id: str | None = None,
        options: RunOptions | Mapping[str, Any] | None = None,
        desc: str = "",
        record: bool = True,
        tags: Sequence[str] = (),
        gpus: str | Sequence[int] | None = None,
        detach: bool = False,
    ) -> RunResult:
        """Run what is missing or stale; see :func:`orchestrator.engine.run.execute_dag`.

        ``options`` are run-wide settings passed to every task: a :class:`RunOptions`, or a flat
        mapping of its fields (``workers``, ``shard``, ``max_item_failures``, ``devices``, ``strict_data``).
        Unless ``record`` is false the run is recorded in ``<cache>/runs.db``, titled ``desc``, with ``tags``,
        and its HTML report written (see :mod:`orchestrator.records`).

        On this node (the local and process executors) stages are admitted by the resources they ask
        for and get GPUs of their own: ``gpus`` (``"0,1,2,3"``, ``"none"``; default: the project's
        ``gpus`` setting, else what nvidia-smi shows) says which GPUs the run may use, and
        ``executor_options={"jobs": "auto"}`` runs as many stages at once as the node's resources admit.
        ``detach`` (SLURM) returns once the first stages are submitted; a later run re-attaches to them.

        Raises:
            ResourceError: a stage asks for more GPUs or memory than this node has (before anything runs).
        """
        from .records import RunRecorder

        self._check_forced(force)
        executor_options, ledger = self._admission(executor, dict(executor_options or {}), gpus)
        recorder = RunRecorder(self.store, self.project, self.experiment, desc=desc, tags=tags) if record else None
        run_id = run_id or new_run_id()
        with get_executor(executor, **executor_options) as engine, recorder or contextlib.nullcontext():
            feed = self._search_feed(run_id, engine.capacity, ledger) if self.experiment.search else None
            result = execute_dag(
                self.dag,
                self.fingerprints,
                self.store,
                engine,
                forced=force,
                keep_going=keep_going or feed is not None,  # (a failed trial is one trial of the search)
                observer=Observers(*[o for o in (observer, feed, recorder) if o is not None]),
                run_id=run_id,
                project_root=str(self.project.root),
                options=options,
                resources=ledger,
                feed=feed,
                detach=detach,
            )
        if self.save_code is not None:
            self.save_code()
        return result

    def _search_feed(self, run_id: str, capacity: int, ledger: Ledger | None) -> SearchFeed:
        """The feed of a search run: the known trials first, then new ones in waves (see :mod:`orchestrator.search`)."""
        from .records import report_path
        from .search.study import SearchFeed
        from .search.trials import TrialLog

        search = self.experiment.search
        assert search is not None and self.build is not None
        log = TrialLog(self.store.root, search)
        usable = ledger.usable if ledger is not None else 0
        parallel = search.spec.parallel or (min(capacity, usable) if usable else capacity)
        return SearchFeed(search, log.read(), self.dag, self.build, log, parallel,
                          lambda nid: self.store.workspace.log_path(run_id, nid),
                          report_path(self.store.root, run_id).with_name("search.json"),
                          log.path.with_suffix(".optuna"))

    def _admission(self, executor: str, options: dict[str, Any],
                   gpus: str | Sequence[int] | None) -> tuple[dict[str, Any], Ledger | None]:
        """The one-node scheduler's ledger (None for cluster executors), checked against every stage."""
        jobs = options.get("jobs")
        if not executor_class(executor).one_node:
            if jobs == "auto":
                options.pop("jobs")
            return options, None
        from .engine.admission import Ledger
        from .machine import inventory

        try:
            node = inventory(gpus if gpus is not None else self.project.config.get("gpus"))
        except ValueError as exc:
            raise UsageError(f"{exc}") from None
        logger.info("this node: %s", node.describe())
        if jobs == "auto":  # as many as the resources admit: every core, and GPUs shared down to quarters
            options["jobs"], options["prefetch"] = node.cpus + 4 * len(node.gpus), 0
            cores = node.cpus
        else:  # -j N: N at once, and N more waiting in the pool (admitted: they hold what they asked for)
            cores = 2 * int(jobs or node.cpus) if executor == "process" else int(jobs or 0) or node.cpus
        ledger = Ledger(node, cores=cores)
        ledger.check({id(n.stage): n.stage for n in self.dag.nodes.values()}.values())
        return options, ledger

    def compare(self) -> Comparison:
        """The param sets side by side: varying params, latest metrics, and whether each is still fresh
        (see :mod:`orchestrator.records.compare`)."""
        import time

        from .records import open_history
        from .records.compare import compare
        from .records.database import database_path
        from .store.records import ArtifactRecord

        history = open_history(self.store.root) if database_path(self.store.root).exists() else None
        now = time.time()

        def latest(stage: str, param_set: str) -> tuple[str, Any] | None:
            execution = next(iter(history.history_of(stage, param_set, now + 1)), None) if history else None
            if execution is None:
                return None
            return execution.run_id, (self.store.get_record(execution.key) if execution.key else None) or execution

        def loaded(source: Any, output: str) -> Any:
            stored = source.outputs.get(output)
            if stored is None:
                return None
            record = stored if isinstance(stored, ArtifactRecord) else ArtifactRecord(
                stored.name, stored.hash, stored.object, stored.cacher, stored.cacher_version, stored.size, stored.kind)
            try:
                value = load_artifact(self.store, record, as_path=False)
            except Exception:  # noqa: BLE001 - gone from the store since: the row shows no such numbers
                return None
            return value if isinstance(value, Mapping) else None

        try:
            return compare(self.dag, self.plan(), {s.name: s.values for s in self.experiment.sets}, latest, loaded)
        finally:
            if history is not None:
                history.close()

    def _check_forced(self, force: Sequence[str]) -> None:
        for name in force:
            if name not in self.stages:
                raise UsageError(
                    f"--force {name!r}: no such stage.{did_you_mean(name, self.stages)} "
                    f"Stages: {', '.join(sorted(self.stages))}."
                )


def open_session(
    names: Names,
    *,
    overrides: Overrides = (),
    targets: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    project_dir: str | os.PathLike[str] | None = None,
) -> Session:
    """Locate the project, resolve the named param files and build the DAG.

    Raises:
        UsageError: (and subclasses) for every mistake found before running.
    """
    project = find_project(Path(project_dir) if project_dir else None)
    experiment = load_experiment(project.params_dir, [names] if isinstance(names, str) else list(names), overrides)
    modules = import_modules(project, experiment.stage_modules)
    stages = collect_stages(modules)
    if not stages:
        raise UsageError(
            f"no stages found in {', '.join(m.__name__ for m in modules)}. Fix: decorate functions there "
            "with @stage, or list the right modules under stages: in the param file."
        )
    store = open_store(project.cache_dir(cache_dir))
    fingerprinter = Fingerprinter(project.root, CodeDigests(store.root))
    fingerprints = {name: fingerprinter.of_stage(stage) for name, stage in stages.items()}
    fingerprinter.save()
    manifests = Manifests(project.root, store)  # content of params annotated as data, and of files() patterns
    sources = {name: manifests.digest(str(s.options["glob"]), "**/*") for name, s in stages.items() if s.options.get("glob")}
    chosen = list(targets or experiment.targets or ()) or None

    def build(sets: Sequence[ParamSet]) -> Dag:
        dag = build_dag(stages, sets, fingerprints, chosen, sources, manifests.digest,
                        allow_empty=experiment.search is not None)
        if experiment.search is not None and any(node.param_set == ALL for node in dag.nodes.values()):
            aggregates = sorted({n.stage.name for n in dag.nodes.values() if n.param_set == ALL})
            raise UsageError(f"search {experiment.search.name!r}: aggregate stage(s) {', '.join(aggregates)} would "
                             "need every trial. Fix: name the per-trial artifacts under targets: in the param "
                             "file, and compare trials with `experiment compare`.")
        return dag

    if experiment.search is not None:  # a search's param sets are the trials it asked so far
        from .search.trials import with_trials

        experiment = with_trials(experiment, store.root)
    dag = build(experiment.sets)
    manifests.save()
    return Session(project, experiment, stages, fingerprints, dag, store, build, fingerprinter.save)


def plan(names: Names, *, overrides: Overrides = (), targets: Sequence[str] | None = None,
         force: Sequence[str] = (), cache_dir: str | None = None,
         project_dir: str | os.PathLike[str] | None = None) -> Plan:
    """What ``experiment run NAMES`` would do, node by node."""
    return open_session(names, overrides=overrides, targets=targets, cache_dir=cache_dir,
                        project_dir=project_dir).plan(force)


def run(names: Names, *, overrides: Overrides = (), targets: Sequence[str] | None = None,
        force: Sequence[str] = (), cache_dir: str | None = None, executor: str = "local",
        keep_going: bool = False, observer: RunObserver | None = None,
        project_dir: str | os.PathLike[str] | None = None) -> RunResult:
    """Run an experiment from Python; returns the :class:`~orchestrator.engine.driver.RunResult`.

    Edited stage or helper modules are imported afresh first, so a notebook that calls
    ``run`` again after an edit runs the edited code.
    """
    session = open_session(names, overrides=overrides, targets=targets, cache_dir=cache_dir,
                           project_dir=project_dir)
    return session.run(force=force, executor=executor, keep_going=keep_going, observer=observer)


def load(artifact: str, *, params: Names, param_set: str | None = None, overrides: Overrides = (),
         cache_dir: str | None = None, project_dir: str | os.PathLike[str] | None = None) -> Any:
    """Load a cached artifact of the experiment ``params`` (one of its param sets).

    Raises:
        ArtifactNotCached: no run stored it for these params yet (or its stored object was
            corrupt, and is now dropped); the message says what to run.
    """
    session = open_session(params, overrides=overrides, targets=[artifact], cache_dir=cache_dir,
                           project_dir=project_dir)
    the_plan = session.plan()
    producer = next(s for s in session.stages.values() if artifact in s.outputs)
    if producer.aggregate:
        wanted = ALL
    elif param_set is None:
        sets = [s.name for s in session.experiment.sets]
        if len(sets) > 1:
            raise UsageError(f"{artifact!r} exists per param set; pass param_set= one of {sets}.")
        wanted = sets[0]
    else:
        wanted = session.experiment.set_named(param_set).name
    decision = the_plan.decisions[f"{producer.name}@{wanted}"]
    words = ["experiment", "run", *([params] if isinstance(params, str) else params)]
    for text in session.experiment.overrides:
        words += ["--set", text]
    words += ["--target", artifact, *(["--cache-dir", str(cache_dir)] if cache_dir else [])]
    if decision.action is not Action.CACHED or decision.record is None:
        raise ArtifactNotCached(
            f"artifact {artifact!r} of param set {wanted!r} is not cached for the current code and params "
            f"({'; '.join(decision.reasons) or 'upstream not cached'}). Fix: {shlex.join(words)}"
        )
    record = decision.record.outputs[artifact]
    try:
        return load_artifact(session.store, record, as_path=False, stage=producer.name, param_set=wanted)
    except CorruptObjectError as exc:
        # nothing else would notice (no stage of a run loads a final artifact): forget it now
        session.store.discard_object(record.object)
        session.store.drop_record(decision.record.key)
        raise ArtifactNotCached(
            f"artifact {artifact!r} of stage {producer.name!r} [{wanted}]: its stored object "
            f"{record.object[:12]} is corrupt or missing ({exc.__class__.__name__}). It was removed from the "
            f"store, so the next run computes it again. Fix: {shlex.join(words)}"
        ) from exc

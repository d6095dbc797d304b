"""``experiment cache verify``: check every stored artifact against its content hash."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .errors import CorruptObjectError
from .inline import verified_bytes
from .store import Store, describe

logger = logging.getLogger(__name__)

__all__ = ["Problem", "VerifyReport", "verify_store"]


@dataclass(frozen=True)
class Problem:
    """A stored artifact that is missing or does not match its hash."""

    stage: str
    param_set: str
    artifact: str
    key: str
    object: str
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """What verification found."""

    records: int
    artifacts: int
    problems: tuple[Problem, ...]
    repaired: bool


def verify_store(store: Store, *, repair: bool = False,
                 progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Hash every object a key record points to; with ``repair``, forget the broken ones.

    Repairing drops the key records whose objects are bad (and the bad objects), so the
    next run recomputes exactly those stages; nothing else is touched.
    """
    problems: list[Problem] = []
    records = artifacts = 0

    def damaged(key: str) -> None:
        problems.append(Problem("?", "?", "?", key, "", f"key record {key[:12]} is damaged (not a readable "
                                "record): the stage it describes runs again"))

    for record in store.records(on_damaged=damaged):
        records += 1
        for artifact in record.outputs.values():
            artifacts += 1
            try:
                if artifact.data is not None:  # kept in the key record: check it there, write no file
                    verified_bytes(artifact, describe(artifact, record.stage, record.param_set))
                else:
                    store.verified_path(artifact, stage=record.stage, param_set=record.param_set)
            except CorruptObjectError as exc:
                problems.append(Problem(record.stage, record.param_set, artifact.name, record.key,
                                        artifact.object, str(exc).split(". Fix:")[0]))
        if progress is not None:
            progress(records)
    if repair:
        for problem in problems:
            store.drop_record(problem.key)
            if problem.object and store.has_object(problem.object):
                store.discard_object(problem.object)
            logger.info("forgot %s [%s] (%s): the next run recomputes it", problem.stage, problem.param_set,
                        problem.artifact)
    return VerifyReport(records, artifacts, tuple(problems), repair)

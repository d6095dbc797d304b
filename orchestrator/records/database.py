"""The run records database: one SQLite file (``<cache>/runs.db``), its schema and migrations.

Opened with WAL journaling, ``synchronous=NORMAL`` (a commit is not fsynced; the WAL is
checkpointed in the background) and a ``busy_timeout``, so several runs sharing one cache
can write at once. The schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS`
holds one script per version and a database is brought up to date when it is opened for
writing. A damaged file raises :class:`~orchestrator.errors.RecordsError` with the command
that moves it aside: history is never silently replaced by an empty one.

Commands that only read (``experiment runs``, ``show``, ``lineage``) open it with
:func:`connect_read_only`, which writes nothing: it works on a read-only store too.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shlex
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import RecordsError
from ..processes import process_alive

logger = logging.getLogger(__name__)

__all__ = ["DB_NAME", "MIGRATIONS", "SCHEMA_VERSION", "close_dead_runs", "connect", "connect_read_only",
           "database_path", "guarded"]

DB_NAME = "runs.db"
BUSY_TIMEOUT_MS = 30_000

# Version n of the schema is reached by running MIGRATIONS[n - 1] on version n - 1.
# `executions` has no secondary index on purpose: a warm run appends a row per stage, and
# indexes on hashes or stage names would turn each append into a random-page write. Queries
# by stage walk the runs newest first (runs_started) and each run's rows by primary key;
# `keys.run_id`/`keys.node` point at the execution that first computed a key.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        started REAL NOT NULL,
        ended REAL,
        seconds REAL,
        project TEXT NOT NULL DEFAULT '',
        cwd TEXT NOT NULL DEFAULT '',
        command TEXT NOT NULL DEFAULT '',
        host TEXT NOT NULL DEFAULT '',
        user TEXT NOT NULL DEFAULT '',
        pid INTEGER,
        pid_start TEXT NOT NULL DEFAULT '',
        experiment TEXT NOT NULL DEFAULT '{}',
        environment TEXT NOT NULL DEFAULT '{}',
        git TEXT NOT NULL DEFAULT '{}',
        snapshot TEXT NOT NULL DEFAULT '{}',
        dag TEXT NOT NULL DEFAULT '{}',
        counts TEXT NOT NULL DEFAULT '{}',
        metrics TEXT NOT NULL DEFAULT '{}',
        report TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX runs_started ON runs(started);
    CREATE TABLE keys (
        key TEXT PRIMARY KEY,
        stage TEXT NOT NULL,
        param_set TEXT NOT NULL,
        code_label TEXT NOT NULL DEFAULT '',
        code TEXT NOT NULL DEFAULT '{}',
        params TEXT NOT NULL DEFAULT '{}',
        inputs TEXT NOT NULL DEFAULT '{}',
        cachers TEXT NOT NULL DEFAULT '{}',
        extras TEXT NOT NULL DEFAULT '{}',
        created REAL,
        run_id TEXT,
        node TEXT
    ) WITHOUT ROWID;
    CREATE TABLE executions (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        node TEXT NOT NULL,
        seq INTEGER NOT NULL,
        stage TEXT NOT NULL,
        param_set TEXT NOT NULL,
        key TEXT,
        status TEXT NOT NULL,
        started REAL,
        ended REAL,
        seconds REAL NOT NULL DEFAULT 0,
        peak_rss INTEGER NOT NULL DEFAULT 0,
        reasons TEXT NOT NULL DEFAULT '[]',
        outputs TEXT NOT NULL DEFAULT '{}',
        log_path TEXT NOT NULL DEFAULT '',
        error TEXT,
        extras TEXT,
        PRIMARY KEY (run_id, node)
    ) WITHOUT ROWID;
    CREATE TABLE artifacts (
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        object TEXT NOT NULL,
        cacher TEXT NOT NULL,
        cacher_version TEXT NOT NULL,
        size INTEGER NOT NULL,
        kind TEXT NOT NULL,
        PRIMARY KEY (key, name, hash)
    ) WITHOUT ROWID;
    CREATE INDEX artifacts_hash ON artifacts(hash);
    CREATE INDEX artifacts_name ON artifacts(name);
    """,
    # 2: the order runs finished in, as the database saw it (no machine's clock is trusted for it)
    """
    ALTER TABLE runs ADD COLUMN finished_seq INTEGER;
    """,
    # 3: tags (`run --tag`, `experiment tag`) and notes (`experiment note`) on runs
    """
    CREATE TABLE tags (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        PRIMARY KEY (run_id, tag)
    ) WITHOUT ROWID;
    CREATE INDEX tags_tag ON tags(tag);
    ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT '[]';
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def database_path(cache_dir: Path) -> Path:
    """Where the run records of the store at ``cache_dir`` live."""
    return Path(cache_dir) / DB_NAME


def _recovery(path: Path) -> str:
    quoted = shlex.quote(str(path))
    return (f"Fix: move it aside to start a fresh history (artifacts in the cache are not affected): "
            f"mv {quoted} {quoted}.damaged; rm -f {quoted}-wal {quoted}-shm "
            f"(or salvage it first: sqlite3 {quoted}.damaged .recover | sqlite3 {quoted}).")


def translate(exc: sqlite3.Error, path: Path) -> RecordsError:
    """A :class:`RecordsError` saying what went wrong with the database at ``path`` and the fix."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return RecordsError(f"the run records at {path} stayed locked by another process for "
                            f"{BUSY_TIMEOUT_MS // 1000}s ({text}). Fix: wait for the other run to finish, then retry.")
    if isinstance(exc, sqlite3.OperationalError) and ("readonly" in text or "unable to open" in text):
        return RecordsError(f"cannot open the run records at {path} for writing ({text}). "
                            "Fix: make the cache folder writable, or pass --cache-dir DIR.")
    if "full" in text or getattr(exc, "sqlite_errorcode", None) == 13 or _nearly_full(path):  # SQLITE_FULL
        return RecordsError(f"the file system holding the run records at {path} is full ({text}; "
                            f"{_free(path)}). Nothing recorded was lost. Fix: free some space there (experiment "
                            "cache gc, or delete other files), then run again.")
    if _intact(path):  # not every error means damage: never suggest moving an intact history aside
        return RecordsError(f"the run records at {path} could not be used ({text}); the file itself passes "
                            "SQLite's integrity check. Fix: check the disk and its free space, then run again.")
    return RecordsError(f"the run records at {path} are damaged ({text}). {_recovery(path)}")


def _free(path: Path) -> str:
    import shutil

    try:
        usage = shutil.disk_usage(path.parent)
    except OSError:
        return "free space unknown"
    return f"{usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:.0f} MiB"


def _nearly_full(path: Path) -> bool:
    """Less than 1 MiB free where the database lives: a "disk I/O error" there is a full disk."""
    import shutil

    try:
        return shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        return False


def _intact(path: Path) -> bool:
    """``PRAGMA quick_check`` on a separate read-only connection says "ok"."""
    for query in ("mode=ro", "immutable=1"):
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?{query}", uri=True, timeout=5)) as conn:
                return bool(conn.execute("PRAGMA quick_check").fetchone()[0] == "ok")
        except sqlite3.Error:
            continue
    return False


@contextlib.contextmanager
def guarded(path: Path) -> Iterator[None]:
    """Turn :mod:`sqlite3` errors raised in the block into :class:`RecordsError`."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc


def connect(path: Path) -> sqlite3.Connection:
    """Open the run records database at ``path``, creating or migrating it to the current schema.

    Raises:
        RecordsError: the file is damaged, locked for too long, not writable, or was
            written by a newer version of orchestrator.
    """
    _refuse_truncated(path)
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:  # many runs starting at once on a fresh store: creating it and switching to WAL contend
        try:
            return _connect(path)
        except sqlite3.OperationalError as exc:
            if not _contended(exc) or time.monotonic() > deadline:
                raise
        except RecordsError as exc:
            if not _contended(exc.__cause__) or time.monotonic() > deadline:
                raise
        time.sleep(0.05 + random.random() * 0.2)


def _contended(exc: BaseException | None) -> bool:
    """A lock another process holds for a moment (SQLite does not always wait for it on its own)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _connect(path: Path) -> sqlite3.Connection:
    with guarded(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are opened explicitly with BEGIN
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RecordsError(
                    f"the run records at {path} use schema version {version}, newer than this orchestrator "
                    f"understands ({SCHEMA_VERSION}). Fix: pip install --upgrade orchestrator."
                )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if version < SCHEMA_VERSION:
                _migrate(conn, path)
            else:
                conn.execute("SELECT count(*) FROM runs LIMIT 1").fetchone()  # reads a page: detects damage
        except BaseException:
            conn.close()
            raise
    return conn


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open the run records at ``path`` for reading only: nothing is created, migrated or written.

    ``mode=ro`` first (it reads what running runs are writing to the WAL). In a read-only folder
    SQLite cannot create the WAL's index beside the file, so then the file is opened as
    ``immutable`` (nothing can be writing to it there). A database older than this schema is
    opened by :func:`connect` instead, which migrates it; where there is no file yet, the
    connection is to an empty database in memory.

    Raises:
        RecordsError: as :func:`connect` (damaged, too new), or the file cannot be read at all.
    """
    if not Path(path).exists():
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        _migrate(conn, path)
        return conn
    _refuse_truncated(path)
    uri = f"{Path(path).absolute().as_uri()}?mode=ro"
    with guarded(path):
        try:
            conn = _open_read_only(uri)
        except sqlite3.OperationalError as exc:
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
            wal = Path(f"{path}-wal")
            if wal.exists() and wal.stat().st_size:
                logger.warning("the run records at %s are in a read-only folder without their WAL index (%s-shm): "
                               "what is still in %s is not shown", path, path.name, wal.name)
            logger.debug("%s: %s; opening it as immutable (a read-only folder)", path, exc)
            conn = _open_read_only(f"{uri}&immutable=1")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            conn.close()
            return connect(path)
        if version > SCHEMA_VERSION:
            conn.close()
            raise RecordsError(
                f"the run records at {path} use schema version {version}, newer than this orchestrator "
                f"understands ({SCHEMA_VERSION}). Fix: pip install --upgrade orchestrator."
            )
    return conn


def _open_read_only(uri: str) -> sqlite3.Connection:
    """A connection to ``uri`` that refuses writes, checked by a first read."""
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the file (and its WAL): fails here
    except BaseException:
        conn.close()
        raise
    return conn


def _refuse_truncated(path: Path) -> None:
    """An empty database file beside recorded runs was truncated: never start an empty history over it."""
    try:
        if path.stat().st_size:
            return
    except FileNotFoundError:
        return
    runs = path.parent / "runs"
    recorded = [entry for entry in runs.iterdir() if entry.is_dir()] if runs.is_dir() else []
    if recorded:
        raise RecordsError(f"the run records at {path} are empty (0 bytes), although {runs} holds "
                           f"{len(recorded)} runs' logs and reports: the file was truncated. {_recovery(path)}")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("BEGIN IMMEDIATE")  # one migrator at a time; the others wait, then see the new version
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, SCHEMA_VERSION):
            logger.debug("migrating %s to schema version %d", path, number + 1)
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def close_dead_runs(conn: sqlite3.Connection) -> list[str]:
    """Mark runs left ``running`` by a process that is gone (on this host) as interrupted; returns their ids."""
    rows = conn.execute("SELECT id, host, pid, pid_start FROM runs WHERE status = 'running'").fetchall()
    dead = [row[0] for row in rows if process_alive(row[1], row[2], row[3]) is False]
    for run_id in dead:
        logger.info("run %s was killed; marking it interrupted", run_id)
        conn.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?", (run_id,))
        conn.execute("UPDATE executions SET status = 'interrupted' WHERE run_id = ? AND status = 'running'",
                     (run_id,))
    return dead

"""The artifact store in a local (or NFS) folder."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreError
from ..keys.hashing import hash_file
from .base import Store
from .localfs import entry_kind, first_non_folder, hash_tree, not_a_folder, remove

logger = logging.getLogger(__name__)

__all__ = ["LocalStore"]

_READ = 1 << 14  # bytes per read of a record: most take one, and one more that finds the end


class LocalStore(Store):
    """A store in a local (or NFS) folder."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.url = str(self.root)
        self.objects = self.root / "objects"
        self._folders: set[str] = set()
        self._fresh: dict[str, tuple[int, int, int]] = {}  # objects this process stored: (inode, size, mtime)
        _check_owner(self.root)

    def folders(self) -> tuple[Path, ...]:
        return (*super().folders(), self.objects, self.root / "keys", self.root / "leases", self.root / "maps")

    def layout_problems(self, deep: bool = False) -> list[Path]:
        """As :meth:`Store.layout_problems`; ``deep`` also looks at the prefix folders (``keys/ab``)."""
        found = set(super().layout_problems())
        for top in ("objects", "keys", "maps") if deep else ():
            found.update(self.root / top / name for name in self.list_names(top)
                         if entry_kind(self.root / top / name) != "dir")
        return sorted(found)

    def _failure(self, path: str | Path, exc: OSError, doing: str) -> StoreError:
        """The error for a failed read, write or folder creation at ``path``: names what is in the way, if any."""
        blocker = first_non_folder(self.root, Path(path) if doing == "create" else Path(path).parent)
        if blocker is not None:
            return not_a_folder(blocker, self.root)
        full = " Is the disk full?" if doing == "write" else ""
        return StoreError(f"cannot {doing} {path}: {exc.strerror or exc}.{full}")

    def _folder(self, path: Path | str) -> None:
        folder = str(path)
        if folder not in self._folders:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise self._failure(folder, exc, "create") from exc
            self._folders.add(folder)

    # records and leases are small and many (one per stage run): read and written with plain os calls on
    # str paths, at half the cost of pathlib's text layer
    def read_text(self, rel: str) -> str | None:
        path = f"{self.url}/{rel}"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._failure(path, exc, "read") from exc
        try:
            chunks = [os.read(fd, _READ)]  # (no file object: a third of the cost of one, for a 1 KB record)
            while chunks[-1]:  # (until end of file: NFS or FUSE may return short reads before it)
                chunks.append(os.read(fd, _READ))
        except OSError as exc:
            raise self._failure(path, exc, "read") from exc
        finally:
            os.close(fd)
        data = chunks[0] if len(chunks) == 2 else b"".join(chunks)
        return data.decode()  # (not UTF-8: a ValueError, which readers take for a damaged record)

    def write_text(self, rel: str, text: str) -> None:
        self.prepare()
        path = f"{self.url}/{rel}"
        staged = f"{self.url}/tmp/{os.urandom(16).hex()}.json"
        self._folder(path.rpartition("/")[0])
        try:
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                data = memoryview(text.encode())
                while data:  # (a write may take part of it: a signal, a full disk about to say so)
                    written = os.write(fd, data)
                    if written <= 0:
                        raise OSError(errno.EIO, "nothing written")
                    data = data[written:]
            finally:
                os.close(fd)
            os.replace(staged, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(staged)
            raise self._failure(path, exc, "write") from exc

    def create_exclusive(self, rel: str, text: str) -> bool:
        path = self.root / rel
        self._folder(path.parent)
        try:
            with open(path, "x", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError:
            return False
        return True

    def share(self, rel: str, text: str) -> bool:
        self.write_text(rel, text)
        probe = self.root / f"{rel}.probe"
        try:  # hard links: every local file system, most network ones (not some FUSE or SMB mounts)
            os.link(self.root / rel, probe)
        except OSError:
            self.delete(rel)
            return False
        probe.unlink()
        return True

    def link_exclusive(self, rel: str, shared: str) -> bool:
        try:
            os.link(self.root / shared, self.root / rel)
        except FileExistsError:
            return False
        return True

    def rewrite(self, rel: str, text: str) -> None:
        with open(self.root / rel, "r+b") as handle:
            handle.write(text.encode())
            handle.truncate()

    def list_names(self, rel_dir: str) -> list[str]:
        try:
            return [entry.name for entry in os.scandir(self.root / rel_dir)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)

    def object_path(self, object_hash: str) -> Path:
        """Where an object with this content hash lives."""
        return self.objects / object_hash[:2] / object_hash

    def has_object(self, object_hash: str) -> bool:
        return self.object_path(object_hash).exists()

    def _existing_is_intact(self, object_hash: str, kind: str) -> bool:
        path = self.object_path(object_hash)
        if entry_kind(path) != kind:  # a folder or a FIFO where a file belongs (never opened)
            actual = ""
        else:
            actual = hash_tree(path)[0] if kind == "dir" else hash_file(path)
        if actual != object_hash:
            logger.warning("stored object %s was corrupt; replacing it with the fresh copy", object_hash[:12])
            self.discard_object(object_hash)
            return False
        return True

    def _publish(self, staged: Path, object_hash: str) -> None:
        target = self.object_path(object_hash)
        self._folder(target.parent)
        try:
            os.rename(staged, target)
        except OSError:
            if entry_kind(target) == entry_kind(staged):  # a concurrent writer published the same content: fine
                remove(staged)
                return
            if not os.path.lexists(target):
                raise
            self.discard_object(object_hash)  # a folder where a file belongs, or the reverse: replaced
            os.rename(staged, target)
        self._remember_intact(object_hash, target)

    def _known_intact(self, object_hash: str, path: Path) -> bool:
        known = self._fresh.get(object_hash)
        return known is not None and known == _identity(path)

    def _remember_intact(self, object_hash: str, path: Path) -> None:
        identity = _identity(path)
        if identity is not None:
            self._fresh[object_hash] = identity

    def local_object(self, object_hash: str, kind: str = "file") -> Path:
        return self.object_path(object_hash)

    def object_entries(self) -> Iterator[tuple[str, int, float]]:
        for prefix in self.list_names("objects"):
            for name in self.list_names(f"objects/{prefix}"):
                path = self.objects / prefix / name
                info = path.lstat()
                folder = stat.S_ISDIR(info.st_mode)  # (a FIFO or a link where an object belongs: its own size)
                size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if folder else info.st_size
                yield name, size, info.st_mtime

    def discard_object(self, object_hash: str) -> None:
        path = self.object_path(object_hash)
        if os.path.lexists(path):
            quarantine = self.workspace.staging_path(".discard")
            os.rename(path, quarantine)
            remove(quarantine)


TRUST_ENV = "ORCHESTRATOR_TRUST_CACHE"


def _identity(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of a regular file, or None."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns) if stat.S_ISREG(info.st_mode) else None


def _check_owner(root: Path) -> None:
    """Refuse a store another user owns: loading pickles from it would run their code."""
    try:
        owner = root.stat().st_uid
    except OSError:
        return
    if owner == os.getuid() or os.environ.get(TRUST_ENV) == "1":
        return
    try:
        import pwd

        name = pwd.getpwuid(owner).pw_name
    except (ImportError, KeyError):
        name = str(owner)
    raise StoreError(
        f"the artifact store {root} belongs to user {name!r}. Stored pickles run code when loaded, so a "
        f"cache is as trusted as code. Fix: use your own --cache-dir, or set {TRUST_ENV}=1 if you trust "
        f"{name!r}."
    )

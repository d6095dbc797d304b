"""Content-hash throughput on 1 GiB: xxh3-128 vs blake3 vs sha256 (prints JSON lines).

``python hash_speed.py algorithms`` hashes an in-memory buffer in place (run it where
xxhash and blake3 are installed); ``python hash_speed.py store-file`` times the store's
own :func:`orchestrator.keys.hashing.hash_file` on a 1 GiB file read from the page cache.
Each figure is the best of three.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable

SIZE = 1 << 30
CHUNK = 1 << 20
REPEATS = 3


def best_gbps(fn: Callable[[], object], size: int = SIZE) -> float:
    """Throughput in GB/s (10^9 bytes) of the fastest of :data:`REPEATS` calls."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return size / best / 1e9


def chunked(hasher_factory: Callable[[], object], view: memoryview) -> Callable[[], object]:
    """Hash ``view`` through ``update`` in 1 MiB slices (how a file is hashed while read)."""

    def run() -> object:
        hasher = hasher_factory()
        for start in range(0, len(view), CHUNK):
            hasher.update(view[start:start + CHUNK])  # type: ignore[attr-defined]
        return hasher.hexdigest()  # type: ignore[attr-defined]

    return run


def algorithms() -> list[dict[str, object]]:
    """Every available algorithm over the same 1 GiB buffer."""
    buffer = bytes(range(256)) * (SIZE // 256)
    view = memoryview(buffer)
    rows: list[dict[str, object]] = []
    import xxhash

    rows.append({"hash": "xxh3-128 (one call)", "gbps": best_gbps(lambda: xxhash.xxh3_128_hexdigest(view))})
    rows.append({"hash": "xxh3-128 (1 MiB updates)", "gbps": best_gbps(chunked(xxhash.xxh3_128, view))})
    try:
        import blake3
    except ImportError:
        rows.append({"hash": "blake3", "gbps": None, "note": "not installable here"})
    else:
        rows.append({"hash": "blake3 (1 thread)", "gbps": best_gbps(lambda: blake3.blake3(view).hexdigest())})
        rows.append({"hash": f"blake3 ({os.cpu_count()} threads)",
                     "gbps": best_gbps(lambda: blake3.blake3(view, max_threads=blake3.blake3.AUTO).hexdigest())})
    rows.append({"hash": "sha256 (hashlib)", "gbps": best_gbps(lambda: hashlib.sha256(view).hexdigest())})
    return rows


def store_file() -> list[dict[str, object]]:
    """The store's own file hashing (xxh3-128, 1 MiB reads) of a 1 GiB file in the page cache."""
    from orchestrator.keys.hashing import hash_file

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "blob")
        with open(path, "wb") as handle:
            block = bytes(range(256)) * (CHUNK // 256)
            for _ in range(SIZE // CHUNK):
                handle.write(block)
        hash_file(path)  # warm the page cache
        return [{"hash": "orchestrator hash_file (xxh3-128, 1 GiB file in page cache)",
                 "gbps": best_gbps(lambda: hash_file(path))}]


def main(argv: list[str]) -> int:
    modes = {"algorithms": algorithms, "store-file": store_file}
    if len(argv) != 1 or argv[0] not in modes:
        sys.stderr.write(f"usage: hash_speed.py {'|'.join(modes)}\n")
        return 2
    for row in modes[argv[0]]():
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Content checksums of files and folders (checkpoints, model folders).

`sha256_file` reads a file whole; `folder_fingerprint` combines its files' checksums with
their relative paths, so two folders agree only if every file does. Checksums of files
already seen are kept in a small JSON cache keyed by (absolute path, size, modification
time), so fingerprinting a 15 GB model folder costs one read the first time and a stat per
file afterwards; a file rewritten in place (new size or mtime) is read again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cache_file() -> Path:
    """Where checksums are remembered: $HARNESS_CACHE_DIR, else ~/.cache/harness."""
    root = os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness"
    return Path(root) / "file-sha256.json"


def folder_fingerprint(folder: str | Path) -> str:
    """sha256 over (relative path, sha256) of every file under `folder`, sorted."""
    folder = Path(folder).resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder} holds no files to fingerprint")
    cache_path = cache_file()
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    h, changed = hashlib.sha256(), False
    for p in files:
        st = p.stat()
        key = str(p)
        entry = cache.get(key)
        if not (isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns):
            entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(p)}
            cache[key], changed = entry, True
        h.update(f"{p.relative_to(folder)}\0{entry['sha256']}\n".encode())
    if changed:
        try:  # best effort: a read-only home only costs the next run a re-read
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_name(f"{cache_path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_path)
        except OSError as err:  # only costs the next run a re-read of the files
            log.warning("cannot write the checksum cache %s (%s)", cache_path, err)
    return h.hexdigest()

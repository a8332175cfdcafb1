"""File plumbing: atomic writes and content hashes (the one implementation of each).

* Atomic writes (docs/design.md §7): a file is written to a temporary name in the same folder and renamed
  with `os.replace`, so a failed or interrupted run never leaves a half-written output, cache or
  manifest. `atomic_path` is the primitive for writers that want a path (Parquet, xlsx);
  `atomic_write_bytes` / `atomic_write_text` write a value.
* Content hashes (docs/design.md §8, §9): `sha256_file` for one file, `folder_fingerprint` for an input
  folder. They decide when a cache is stale, so they hash the content of *every* file a reader
  could use (any extension: an edited `.tsv`, `.xls` or boundary file must invalidate the cache),
  not modification times.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "sha256_file", "folder_fingerprint"]


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path next to `path` (parent folders created); rename it to `path` when the
    block succeeds, delete it when the block fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600: colleagues must be able to read reports
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write bytes to `path` through a temporary file and `os.replace`; returns `path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write text to `path` atomically; newlines are kept exactly as given (no platform translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's content (read in chunks: input files can be gigabytes)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _skipped(rel: Path, ignore: tuple[str, ...]) -> bool:
    """Hidden files/folders (.DS_Store, .ipynb_checkpoints) and Office lock files (~$x.xlsx) are
    not inputs: hashing them would make the cache stale whenever a file is merely open in Excel."""
    return any(part.startswith((".", "~$")) or part in ignore for part in rel.parts)


def folder_fingerprint(folder, ignore: tuple[str, ...] = ()) -> str:
    """Hex SHA-256 over the relative path and content of every file under `folder` (recursively,
    sorted; hidden files, Office lock files and files or folders named in `ignore` skipped). Any
    added, removed, renamed or edited file changes it, whatever its extension."""
    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or _skipped(rel, ignore):
            continue
        h.update(rel.as_posix().encode("utf-8") + b"\0" + sha256_file(p).encode() + b"\n")
    return h.hexdigest()

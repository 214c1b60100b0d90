"""Files in the cache (datasets, teacher checkpoints) written whole and read verified.

A file is written under a temporary name unique to its writer, next to its final name,
then renamed over it: several processes filling one cache never read a half-written file
or overwrite each other's temporary file. Its SHA-256 goes beside it (``<name>.sha256``)
and, for a teacher checkpoint, into MLflow; a file that does not match its checksum (a
truncated write, a disk error, a file swapped by hand) is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUFFIX = ".sha256"


def digest(path: Path) -> str:
    """The SHA-256 of the file at ``path``, in hex."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def write(path: Path, save: Callable[[Path], Any]) -> str:
    """``save(tmp)`` a file, then rename it to ``path`` with its checksum beside it; its
    SHA-256. A failed write (a full disk) leaves neither a partial file nor a temporary."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        save(tmp)
        sha = digest(tmp)
        _write_text(path.with_name(path.name + SUFFIX), sha + "\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return sha


def save(obj: Any, path: Path) -> str:
    """:func:`torch.save` ``obj`` to ``path`` through :func:`write`; its SHA-256."""
    import torch

    return write(path, lambda tmp: torch.save(obj, tmp))


def recorded(path: Path) -> str | None:
    """The checksum written beside ``path``; ``None`` when there is none."""
    try:
        return Path(path).with_name(Path(path).name + SUFFIX).read_text().strip() or None
    except OSError:
        return None


def intact(path: Path, expected: str | None = None) -> bool:
    """Whether ``path`` exists and matches ``expected`` (else the checksum beside it; a file
    without any checksum, from an older kdbench, is taken as it is)."""
    path = Path(path)
    if not path.is_file():
        return False
    expected = expected or recorded(path)
    return expected is None or digest(path) == expected


def load_or_build(path: Path, build: Callable[[], Any], what: str) -> Any:
    """The tensors cached at ``path``, or ``build()`` saved there when the file is missing,
    does not match its checksum or cannot be read (said in one warning line)."""
    import torch

    path = Path(path)
    if path.is_file():
        problem = None if intact(path) else "does not match its checksum"
        if problem is None:
            try:
                return torch.load(path, weights_only=True)
            except Exception as error:
                problem = f"cannot be read ({type(error).__name__})"
        warnings.warn(f"{what} cache {path} {problem}; rebuilding it", stacklevel=2)
    value = build()
    save(value, path)
    return value


def _write_text(path: Path, text: str) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise

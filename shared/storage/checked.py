"""Crash-safe, self-checking files for state that must survive a restart.

A file is written to a temporary name in the same directory, flushed to disk, then
renamed over the old one, so a reader sees the old version or the new one, never
half of either. The payload carries its SHA-256: a truncated or corrupted file is
rejected with a clear message instead of being half-loaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Self

import torch

from crossfed.shared.errors import CrossfedError

_MAGIC = b"CROSSFED1\n"
_DIGEST_BYTES = 32


class CorruptStateError(CrossfedError, RuntimeError):
    """A state or checkpoint file failed its integrity check."""


class StateWriteError(CrossfedError, OSError):
    """A state or checkpoint file could not be written; the previous version is untouched."""


def save_checked(path: str | Path, obj: Any) -> None:
    """Serialise ``obj`` with ``torch.save`` and write it atomically with its checksum."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(path, _MAGIC + hashlib.sha256(payload).digest() + payload)


def load_checked(path: str | Path) -> Any:
    """Load what :func:`save_checked` wrote, or raise :class:`CorruptStateError`."""
    path = Path(path)
    data = path.read_bytes()
    header = len(_MAGIC) + _DIGEST_BYTES
    if len(data) < header or not data.startswith(_MAGIC):
        raise CorruptStateError(f"{path}: not a crossfed state file or truncated before its header")
    digest, payload = data[len(_MAGIC) : header], data[header:]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptStateError(f"{path}: checksum mismatch (file truncated or corrupted); refusing to load it")
    return torch.load(io.BytesIO(payload), weights_only=False)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; on failure (disk full, read-only) the old file stays as it was."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise StateWriteError(error.errno, f"cannot write {path}: {error.strerror or error}; "
                              "the previous version, if any, is intact") from error
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise StateWriteError(error.errno, f"cannot write {path}: {error.strerror or error}; "
                                  "the previous version, if any, is intact") from error
        raise


class CheckedRecord:
    """Mixin for a dataclass kept as one self-checking file named ``FILE_NAME`` in a directory."""

    FILE_NAME: ClassVar[str]

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / self.FILE_NAME
        save_checked(path, asdict(self))  # type: ignore[call-overload]
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Self | None:
        """The saved record, None if there is none yet; a corrupt file raises, never half-loads."""
        path = Path(directory) / cls.FILE_NAME
        return cls(**load_checked(path)) if path.exists() else None

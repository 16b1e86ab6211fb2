"""Crash-safe, self-checking files for state that must survive a restart, in a format that cannot run code.

A file is written to a temporary name in the same directory, flushed to disk, then
renamed over the old one, so a reader sees the old version or the new one, never
half of either. The payload carries its SHA-256: a truncated or corrupted file is
rejected with a clear message instead of being half-loaded. The checksum is not
authentication: whoever can write the file can compute it, so it catches accidents
(a crash, a full disk, a flipped bit), never an attacker.

What makes a hostile file harmless is the format. A coordinator is not trusted, yet a
platform reads the coordinator's files; so the payload holds only tensors and plain values
(dict, list, tuple, str, int, float, bool, None) and is read with
``torch.load(weights_only=True)``, which rebuilds nothing else and refuses a file that asks
for any other object (:class:`UnsafeStateError`): nothing read can run code. Numpy arrays
are stored as tensors, marked so that they come back as numpy arrays, bit for bit.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import torch

from crossfed.shared.errors import CrossfedError

_MAGIC = b"CROSSFED2\n"
_PICKLE_MAGIC = b"CROSSFED1\n"  # format 1, a full pickle that may run code when loaded: refused
_DIGEST_BYTES = 32
#: Marks a tensor that was a numpy array when saved.
_NUMPY = "__numpy__"
#: Array kinds a tensor can hold: bool, signed and unsigned integers, floats, complex numbers.
_NUMERIC_KINDS = "biufc"


class CorruptStateError(CrossfedError, RuntimeError):
    """A state or checkpoint file failed its integrity check."""


class StateWriteError(CrossfedError, OSError):
    """A state or checkpoint file could not be written; the previous version is untouched."""


class UnsafeStateError(CorruptStateError):
    """A state file asks to rebuild objects other than tensors and plain values: loading it could run code."""


def save_checked(path: str | Path, obj: Any) -> None:
    """Write ``obj`` (tensors, numpy arrays, plain values) atomically with its checksum.

    Raises:
        TypeError: ``obj`` holds something else, which the safe format cannot store.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(_stored(obj), buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(path, _MAGIC + hashlib.sha256(payload).digest() + payload)


def load_checked(path: str | Path) -> Any:
    """Load what :func:`save_checked` wrote, or raise :class:`CorruptStateError` (never run code)."""
    path = Path(path)
    data = path.read_bytes()
    header = len(_MAGIC) + _DIGEST_BYTES
    if data.startswith(_PICKLE_MAGIC):
        raise CorruptStateError(
            f"{path}: written by an earlier crossfed as a pickle, which could run code when "
            "loaded; refusing to load it (remove it, and start the run or the platform afresh)"
        )
    if len(data) < header or not data.startswith(_MAGIC):
        raise CorruptStateError(f"{path}: not a crossfed state file or truncated before its header")
    digest, payload = data[len(_MAGIC) : header], data[header:]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptStateError(f"{path}: checksum mismatch (file truncated or corrupted); refusing to load it")
    try:
        stored = torch.load(io.BytesIO(payload), weights_only=True)
    except pickle.UnpicklingError as error:
        asked = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), "")  # what it asked for
        raise UnsafeStateError(
            f"{path}: holds objects other than tensors and plain values, which could run code "
            f"when loaded; refusing to load it{f' ({asked[:200]})' if asked else ''}"
        ) from None
    except Exception as error:  # a payload torch cannot parse at all, whatever the reason
        raise CorruptStateError(f"{path}: unreadable payload ({type(error).__name__}); refusing to load it") from None
    return _restored(stored)


def _stored(value: Any) -> Any:
    """``value`` as what the weights-only loader rebuilds: tensors, containers and plain scalars."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"cannot store a numpy array of dtype {value.dtype} safely; store numbers or a list of str")
        return {_NUMPY: torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (torch.Tensor, str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {key: _stored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stored(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_stored(item) for item in value)
    raise TypeError(f"cannot store a {type(value).__name__} safely: only tensors, numpy arrays and plain values")


def _restored(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(_NUMPY), torch.Tensor):
            return value[_NUMPY].numpy()
        return {key: _restored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_restored(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_restored(item) for item in value)
    return value


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; on failure (disk full, read-only) the old file stays as it was."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise StateWriteError(
            error.errno, f"cannot write {path}: {error.strerror or error}; the previous version, if any, is intact"
        ) from error
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise StateWriteError(
                error.errno, f"cannot write {path}: {error.strerror or error}; the previous version, if any, is intact"
            ) from error
        raise


class CheckedRecord:
    """Mixin for a dataclass kept as one self-checking file named ``FILE_NAME`` in a directory.

    The file records which kind of record it holds (its ``FILE_NAME``), so a file of another
    kind, renamed or passed by mistake, is refused instead of misread.
    """

    FILE_NAME: ClassVar[str]

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / self.FILE_NAME
        save_checked(path, {"record": self.FILE_NAME, "fields": asdict(self)})  # type: ignore[call-overload]
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Self | None:
        """The saved record, None if there is none yet; a corrupt file raises, never half-loads."""
        path = Path(directory) / cls.FILE_NAME
        return read_record(path, cls) if path.exists() else None


Record = TypeVar("Record", bound=CheckedRecord)


def read_record(path: str | Path, *kinds: type[Record]) -> Record:
    """The record in the file ``path``, which must be one of ``kinds``; else :class:`CorruptStateError`."""
    path = Path(path)
    payload = load_checked(path)
    names = ", ".join(kind.FILE_NAME for kind in kinds)
    if not isinstance(payload, dict) or set(payload) != {"record", "fields"} or not isinstance(payload["fields"], dict):
        raise CorruptStateError(f"{path}: not a crossfed record (expected {names})")
    kind = next((kind for kind in kinds if payload["record"] == kind.FILE_NAME), None)
    if kind is None:
        raise CorruptStateError(f"{path}: holds a {payload['record']!r} record, expected {names}")
    try:
        record = kind(**payload["fields"])
    except TypeError as error:
        raise CorruptStateError(f"{path}: its fields do not match a {kind.FILE_NAME} record ({error})") from None
    for declared in fields(record):  # type: ignore[arg-type]
        problem = _field_problem(str(declared.type), getattr(record, declared.name))
        if problem:
            raise CorruptStateError(f"{path}: field {declared.name!r} of the {kind.FILE_NAME} record {problem}")
    return record


_KINDS: dict[str, tuple[type, ...]] = {"dict": (dict,), "list": (list,), "int": (int,), "float": (int, float)}


def _field_problem(annotation: str, value: Any) -> str | None:
    """Why ``value`` cannot be a field declared as ``annotation`` (its outer type), or ``None``.

    A record is read from a file another party may have written; a field of the wrong shape
    (a list where parameter arrays belong) must stop here, not as a traceback deep in a round.
    """
    if value is None and "None" in annotation:
        return None
    outer = annotation.split("[", 1)[0].split("|", 1)[0].strip()
    kinds = _KINDS.get(outer)
    if kinds is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kinds):
        return f"is a {type(value).__name__}, expected {outer}"
    if annotation.startswith("dict[str, np.ndarray]"):
        wrong = next((key for key, item in value.items() if not isinstance(item, np.ndarray)), None)
        if wrong is not None:
            return f"holds {wrong!r} = a {type(value[wrong]).__name__}, expected a numpy array"
    return None

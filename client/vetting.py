"""A platform runs only the app bundles its operator vetted.

A SuperNode runs whatever app bundle (FAB) the run's submitter ships: every platform-side
protection - DP, node-config pins, the outbox allowlist, the SecAgg+ guard - is code in that
bundle. So the operator reviews a bundle (or builds it from reviewed source: ``flwr build`` is
byte-for-byte reproducible) and lists its SHA-256 in a *vetted list*, one hex digest a line,
``#`` starting a comment. :mod:`crossfed.client.vetted_runtime` checks every bundle against
that list before Flower installs or imports any of it.

Flower 1.42's own check (``flower-supernode --trusted-entities``) verifies Ed25519 signatures
that reach a SuperNode only for apps the SuperLink fetched from Flower Hub; a bundle submitted
with ``flwr run`` carries none and is refused, so a federation without Hub needs this list.
"""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from pathlib import Path

from crossfed.shared.errors import CrossfedError

logger = logging.getLogger(__name__)

#: Environment variable naming the operator's vetted list, read by the vetted runtime.
VETTED_ENV = "CROSSFED_VETTED_BUNDLES"
#: How a refusal starts, in the SuperNode's log and in the error reply the coordinator receives.
REFUSED = "refused app bundle"
_DIGEST = re.compile(r"[0-9a-f]{64}")


class VettedListError(CrossfedError, ValueError):
    """The operator's vetted list cannot be read: a line is not a SHA-256 hex digest."""


class BundleNotVettedError(CrossfedError, PermissionError):
    """An app bundle whose SHA-256 is not on the operator's vetted list."""


def bundle_digest(content: bytes) -> str:
    """The SHA-256 hex digest of an app bundle's bytes (the hash Flower names a FAB by)."""
    return hashlib.sha256(content).hexdigest()


def read_vetted(path: Path) -> frozenset[str]:
    """The digests in the vetted list at ``path``; a malformed line is refused naming file and line."""
    digests = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.split("#", 1)[0].strip().lower()
        if not entry:
            continue
        if not _DIGEST.fullmatch(entry):
            raise VettedListError(f"{path}, line {number}: {entry[:80]!r} is not a SHA-256 hex digest (64 hex digits)")
        digests.add(entry)
    return frozenset(digests)


def check_bundle(content: bytes, vetted_list: Path | None) -> str:
    """The bundle's digest if it is on the vetted list; raises :class:`BundleNotVettedError` otherwise.

    No list (``None`` or a missing file) vets nothing: a platform whose operator forgot the list
    runs no coordinator code rather than any.
    """
    digest = bundle_digest(content)
    vetted = read_vetted(vetted_list) if vetted_list is not None and vetted_list.is_file() else frozenset()
    if digest not in vetted:
        # The text reaches the coordinator in Flower's error reply: the digest only, never the list's path.
        logger.error("%s sha256 %s: not in %s", REFUSED, digest, vetted_list or f"any list (set {VETTED_ENV})")
        raise BundleNotVettedError(f"{REFUSED} sha256 {digest}: not on this platform's vetted list")
    logger.info("app bundle sha256 %s is vetted (%s)", digest, vetted_list)
    return digest


def build_bundle(source: Path) -> bytes:
    """The bundle's bytes: a ``.fab`` file as it is, or an app folder built as ``flwr run`` builds it."""
    if source.is_dir():
        from flwr.cli.build import build_fab_from_disk

        with warnings.catch_warnings():  # Flower 1.42's .gitignore matching uses a pattern class pathspec deprecates
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="pathspec")
            return build_fab_from_disk(source)
    return source.read_bytes()


def add_vetted(vetted_list: Path, digest: str, note: str = "") -> bool:
    """Append ``digest`` to the vetted list (created if missing); False if it was already there."""
    if not _DIGEST.fullmatch(digest):
        raise VettedListError(f"{digest!r} is not a SHA-256 hex digest")
    if vetted_list.is_file() and digest in read_vetted(vetted_list):
        return False
    vetted_list.parent.mkdir(parents=True, exist_ok=True)
    with vetted_list.open("a", encoding="utf-8") as handle:
        handle.write(f"{digest}{f'  # {note}' if note else ''}\n")
    return True

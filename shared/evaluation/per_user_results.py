"""Each test user's outcome, kept on the platform's own disk for paired significance tests.

Per-user results are per-user data: they never leave the platform (only the means do,
``crossfed.shared.evaluation.results``). Each file is an ``.npz`` of numeric arrays only
(``users``, ``hit_<protocol>``, ``ndcg_<protocol>``), written atomically and read with
``allow_pickle=False``, so reading one cannot run code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import ClassVar

import numpy as np

from crossfed.shared.evaluation.ranking import PROTOCOLS, UserResults
from crossfed.shared.storage.checked import atomic_write_bytes


class PerUserResults:
    """The test outcome of every test user under the model the platform serves."""

    FILE_NAME: ClassVar[str] = "test_per_user.npz"

    @classmethod
    def save(cls, directory: str | Path, results: UserResults) -> Path:
        path = Path(directory) / cls.FILE_NAME
        arrays = {
            "users": results.users,
            **{f"hit_{p}": v for p, v in results.hits.items()},
            **{f"ndcg_{p}": v for p, v in results.ndcgs.items()},
        }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    @classmethod
    def load(cls, directory: str | Path) -> UserResults | None:
        """The saved results, None if the platform has not been tested yet."""
        path = Path(directory) / cls.FILE_NAME
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as stored:
            return UserResults(
                users=stored["users"],
                hits={p: stored[f"hit_{p}"] for p in PROTOCOLS},
                ndcgs={p: stored[f"ndcg_{p}"] for p in PROTOCOLS},
            )


class GlobalPerUserResults(PerUserResults):
    """The same under the global model; it differs only when the platform serves a private copy."""

    FILE_NAME: ClassVar[str] = "test_per_user_global.npz"


class LocalOnlyPerUserResults(PerUserResults):
    """The same under the platform's local-only model, kept when it serves local-first (weight 0 of its grid)."""

    FILE_NAME: ClassVar[str] = "test_per_user_local_only.npz"

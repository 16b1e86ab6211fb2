"""Fixtures the data tests share."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No CROSSFED_DATA_DIR, cache under tmp_path, and a network that always fails."""
    monkeypatch.delenv("CROSSFED_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("CROSSFED_CACHE", str(cache))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    return cache

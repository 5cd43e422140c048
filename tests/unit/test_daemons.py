"""The helpers' private folder and their start lock (the helpers themselves: tests/integration)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from promptlab import daemons
from promptlab.errors import ConfigError


def test_the_folder_is_made_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMPTLAB_AGENT_DIR", str(tmp_path / "helpers"))
    assert daemons.folder() == tmp_path / "helpers"
    assert (tmp_path / "helpers").stat().st_mode & 0o777 == 0o700


def test_a_folder_others_can_open_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    monkeypatch.setenv("PROMPTLAB_AGENT_DIR", str(shared))
    with pytest.raises(ConfigError, match=r"not private to this user.*PROMPTLAB_AGENT_DIR"):
        daemons.folder()


def test_only_one_holder_of_a_start_lock(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with daemons.locked(lock, wait=False) as first, daemons.locked(lock, wait=False) as second:
        assert first and not second
    with daemons.locked(lock, wait=False) as again:
        assert again


def test_stopping_with_no_helper_stops_nothing(tmp_path: Path) -> None:
    assert daemons.stop_all(tmp_path) == []

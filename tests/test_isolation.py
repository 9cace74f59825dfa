"""The test session never touches the user's caches: ROBUSTBENCH_IBN_CACHE, XDG_CACHE_HOME, TORCH_HOME and HOME point
into one temporary folder from the session's start, before any fixture of any scope runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from conftest import SESSION_HOME
from robustbench_ibn.files import cache_root
from robustbench_ibn.state import default_state_root


@pytest.fixture(scope="module")
def seen_by_a_module_fixture() -> dict[str, Path]:
    """What a module-scoped fixture (set up before the function-scoped isolation) sees: the bug was here."""
    return {"cache": cache_root(), "runs": default_state_root(), "hub": Path(torch.hub.get_dir()),
            "home": Path.home()}


def test_a_module_scoped_fixture_already_sees_the_session_cache(seen_by_a_module_fixture):
    for what, path in seen_by_a_module_fixture.items():
        assert path.is_relative_to(SESSION_HOME), f"{what}: {path} is outside the session folder {SESSION_HOME}"


def test_the_environment_points_into_the_session_folder():
    assert SESSION_HOME.is_dir() and SESSION_HOME.name.startswith("robustbench-ibn-tests-")
    for var in ("ROBUSTBENCH_IBN_CACHE", "XDG_CACHE_HOME", "TORCH_HOME", "HOME"):
        assert Path(os.environ[var]).is_relative_to(SESSION_HOME), var
    assert cache_root().is_relative_to(SESSION_HOME)  # the function-scoped fixtures: folders of the session's too
    assert Path(torch.hub.get_dir()).is_relative_to(SESSION_HOME)

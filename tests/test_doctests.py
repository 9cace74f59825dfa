"""Run the doctested examples of public modules (the transforms folder cannot be collected by path)."""

import doctest
import importlib

import pytest

MODULES = ["robustbench_ibn", "robustbench_ibn.checks", "robustbench_ibn.cli._common", "robustbench_ibn.cli.eval",
           "robustbench_ibn.cli._domains", "robustbench_ibn.corruption", "robustbench_ibn.data",
           "robustbench_ibn.datasets.domains", "robustbench_ibn.effective", "robustbench_ibn.engine", "robustbench_ibn.env",
           "robustbench_ibn.leaderboard",
           "robustbench_ibn.files", "robustbench_ibn.hub", "robustbench_ibn.labels", "robustbench_ibn.metrics",
           "robustbench_ibn.models._api", "robustbench_ibn.models._weights", "robustbench_ibn.options",
           "robustbench_ibn.plots", "robustbench_ibn.report", "robustbench_ibn.runner", "robustbench_ibn.state",
           "robustbench_ibn.text", "robustbench_ibn.transforms._base", "robustbench_ibn.transforms._stylize",
           "robustbench_ibn.transforms.cyclegan",
           "robustbench_ibn.transforms.functional",
           "robustbench_ibn.transforms.imagenet_c",
           "robustbench_ibn.transforms.photometric"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0

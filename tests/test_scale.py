"""Long runs: resume after a kill, 2 ranks under torchrun, the batch grid and the state's lock."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import few_images
from robustbench_ibn.state import RunState, batch_grid

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 8, tmp_path_factory.mktemp("val"))


def cli(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", "resnet18_ibn_b", "--weights", "random", "--transforms", "rgb+50,std1.5",
            "--data", str(data), "--workers", "0", "--format", "json", "--output", str(out), *extra]


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ROBUSTBENCH_IBN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def predictions(path: Path) -> dict:
    record = json.loads(path.read_text())
    return {"labels": record["sources"]["val"]["labels"], **record["predictions"]}


def test_batch_grid_is_shared_by_every_rank_count():
    one = batch_grid(10, 3)
    two = batch_grid(10, 3, 0, 2) + batch_grid(10, 3, 1, 2)
    assert sorted((b.k, b.start, b.stop) for b in two) == [(b.k, b.start, b.stop) for b in one]
    assert [(b.start, b.stop) for b in one] == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_two_runs_of_the_same_state_are_refused(tmp_path):
    with RunState(tmp_path / "s", [["clean"]]):
        with pytest.raises(RuntimeError, match="Another run of the same command"):
            with RunState(tmp_path / "s", [["clean"]]):
                pass


IMAGE_STAGE_PLUGIN = """
from robustbench_ibn import Shift, register_transform


class Negative(Shift):
    stage = "image"

    def forward(self, images):
        return 1.0 - images


register_transform("negative")(Negative)
"""


def test_two_ranks_give_the_predictions_of_one_process(data, tmp_path):
    """Two passes (the crop-stage shifts, then an image-stage one) of 3 batches each, sharded over 2 ranks."""
    plugin = tmp_path / "negative.py"
    plugin.write_text(IMAGE_STAGE_PLUGIN)
    extra = ["--batch-size", "3", "--no-progress", "--plugin", str(plugin), "--transforms", "rgb+50,std1.5,negative"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    subprocess.run([str(BIN / "robust-eval"), *cli(data, one, *extra)], check=True, capture_output=True,
                   env=env(tmp_path), timeout=300)
    done = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "robustbench_ibn", *cli(data, two, *extra)],
        capture_output=True, text=True, env=env(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert predictions(two) == predictions(one)
    assert list(predictions(one)) == ["labels", "clean", "rgb+50", "std1.5", "negative"]
    assert json.loads(two.read_text())["results"] == json.loads(one.read_text())["results"]


def kill_once_committed(argv: list[str], environment: dict[str, str], state: Path, pattern: str = "*/batch-*.npz",
                        wait_s: float = 240) -> int:
    """Start ``argv``, SIGKILL it once a batch file matching ``pattern`` is in ``state`` (or it ended, or ``wait_s``
    passed), and return how many batches it had committed."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    deadline = time.time() + wait_s
    while not list(state.glob(pattern)) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(list(state.glob("*/batch-*.npz")))


def test_killed_run_resumes_and_equals_an_uninterrupted_one(data, tmp_path):
    reference = tmp_path / "reference.json"
    subprocess.run([str(BIN / "robust-eval"), *cli(data, reference, "--batch-size", "1", "--no-progress")],
                   check=True, capture_output=True, env=env(tmp_path), timeout=300)

    state = tmp_path / "state"
    resumed = tmp_path / "resumed.json"
    argv = [str(BIN / "robust-eval"), *cli(data, resumed, "--batch-size", "1", "--state-dir", str(state))]
    committed = kill_once_committed(argv, env(tmp_path), state)
    assert 1 <= committed < 8, "the run must be killed part-way for this test to mean anything"
    assert not resumed.exists()

    again = subprocess.run(argv, capture_output=True, text=True, env=env(tmp_path), timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming, {committed} of 8 images already done" in again.stderr
    assert predictions(resumed) == predictions(reference)
    assert not list(state.glob("*/batch-*.npz"))  # state removed once the result is complete
    assert np.array_equal(predictions(resumed)["labels"], predictions(reference)["labels"])

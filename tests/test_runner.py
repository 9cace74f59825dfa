"""evaluate() against the official evaluation written out by hand, and the Python API around it."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from conftest import few_images
from robustbench_ibn import DataConfig, EvalResult, create_model, evaluate
from robustbench_ibn.data import ImageNetVal
from robustbench_ibn.models.calibrate import calibrate_random_init


@pytest.fixture(scope="module")
def data(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 6, tmp_path_factory.mktemp("val"))


@pytest.fixture(scope="module")
def model(calibration_batch):
    net = create_model("resnet18_ibn_a", weights="random", seed=1)
    return calibrate_random_init(net, calibration_batch, net.data_config.mean, net.data_config.std)


def reference_top5(model, root: Path, shift) -> np.ndarray:
    """IBN-Net's imagenet.py eval, one pass per shift: PIL -> Resize(256) -> CenterCrop(224) -> ToTensor
    -> shift -> Normalize -> model (default memory format)."""
    pre = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    norm = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    x = torch.stack([pre(Image.open(p).convert("RGB")) for p in paths])
    with torch.inference_mode():
        return model(norm(shift(x))).topk(5, dim=1).indices.numpy()


def test_predictions_equal_the_official_pipeline(model, data):
    result = evaluate(model, data, "rgb+50,r+50,std1.5", batch_size=4, workers=0, progress=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    by_hand = {
        "clean": lambda x: x,
        "rgb+50": lambda x: (x + 50 / 255).clamp(0, 1),
        "r+50": lambda x: torch.cat([(x[:, :1] + 50 / 255).clamp(0, 1), x[:, 1:]], 1),
        "std1.5": lambda x: mean + 1.5 * (x - mean),
    }
    for name, shift in by_hand.items():
        expected = reference_top5(model, data, shift)
        assert np.array_equal(result.predictions[name][:, 0], expected[:, 0]), name
        # top-5 as sets: channels_last may reorder near-tied logits, never change them materially
        assert all(set(a) == set(b) for a, b in zip(result.predictions[name], expected)), name
    assert len(set(result.predictions["clean"][:, 0])) > 1  # not a degenerate model


def test_batch_size_and_workers_do_not_change_predictions(model, data):
    a = evaluate(model, data, "rgb+50", batch_size=1, workers=0, progress=False)
    b = evaluate(model, data, "rgb+50", batch_size=5, workers=2, progress=False)
    for name in a.predictions:
        assert np.array_equal(a.predictions[name][:, 0], b.predictions[name][:, 0])
    assert np.array_equal(a.labels, b.labels)


def test_labels_come_from_the_canonical_index(model, data):
    result = evaluate(model, data, "std2", workers=0, progress=False)
    wnids = sorted(d.name for d in data.iterdir())
    from robustbench_ibn.data import wnid_to_index

    index = wnid_to_index()
    assert result.labels.tolist() == [index[w] for w in wnids]  # one image per class folder


def test_to_frame_and_round_trip(model, data, tmp_path):
    result = evaluate(model, data, ["std1.5"], workers=0, progress=False)
    frame = result.to_frame()
    assert list(frame.columns) == ["model", "transform", "label", "source", "n", "top1_err", "top5_err", "top1_drop",
                                   "top5_drop", "reference"]
    assert list(frame["label"]) == ["origin", "std×1.5"] and (frame["n"] == 6).all()
    assert list(frame["reference"]) == ["clean", "clean"]
    result.save(tmp_path / "r.json")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask  # shareable, like a plain open()
    again = EvalResult.load(tmp_path / "r.json")
    assert again.to_frame().equals(frame)
    assert again.protocol["fingerprint"] == result.protocol["fingerprint"]


def test_a_plain_module_needs_a_data_config(data):
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 1000))
    with pytest.raises(ValueError, match="data config"):
        evaluate(net, data, "std2", workers=0, progress=False)
    result = evaluate(net, data, "std2", data_config=DataConfig(), workers=0, progress=False)
    assert result.model == "Sequential" and result.weights["kind"] == "module"


def test_wrong_number_of_classes_is_an_error(data):
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 10))
    with pytest.raises(ValueError, match=r"\[B, 1000\] ImageNet-1k logits, but got \(\d+, 10\)"):
        evaluate(net, data, "std2", data_config=DataConfig(), workers=0, progress=False)


def test_dataset_geometry_must_match_the_model(model, data):
    dataset = ImageNetVal(data, DataConfig(resize=160, crop=128))
    with pytest.raises(ValueError, match="geometry"):
        evaluate(model, dataset, "std2", workers=0, progress=False)


def test_bf16_runs_and_is_recorded(model, data):
    result = evaluate(model, data, "rgb+50", precision="bf16", workers=0, progress=False)
    assert result.protocol["precision"] == "bf16"
    fp32 = evaluate(model, data, "rgb+50", workers=0, progress=False)
    assert result.protocol["fingerprint"] != fp32.protocol["fingerprint"]
    agree = (result.predictions["clean"][:, 0] == fp32.predictions["clean"][:, 0]).mean()
    assert agree >= 0.5


class _Head(torch.nn.Module):
    """A tiny 'classifier' whose logits are a fixed function of the image (1000 classes)."""

    def __init__(self, fail_above: int | None = None, poison: bool = False) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 1000)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))
        torch.nn.init.zeros_(self.proj.bias)
        self.fail_above, self.poison, self.calls = fail_above, poison, []

    def forward(self, x):
        self.calls.append(x.shape[0])
        if self.fail_above is not None and x.shape[0] > self.fail_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        out = self.proj(x.mean((2, 3)))
        return out * float("nan") if self.poison else out


def test_out_of_memory_retries_in_halves_and_says_so(data, capsys):
    reference = evaluate(_Head(), data, "rgb+50", data_config=DataConfig(), batch_size=6, workers=0, progress=False)
    flaky = _Head(fail_above=2)
    result = evaluate(flaky, data, "rgb+50", data_config=DataConfig(), batch_size=6, workers=0, progress=False)
    assert "CUDA out of memory with 6 images" in capsys.readouterr().err
    assert max(s for s in flaky.calls if s <= 2) == 2  # the retried halves, then quarters
    for name in reference.predictions:
        assert np.array_equal(result.predictions[name], reference.predictions[name])


def test_nan_logits_stop_the_run_naming_model_shift_and_batch(data):
    with pytest.raises(RuntimeError, match=r"model '_Head' under shift 'clean' on the batch starting with .*NaN"):
        evaluate(_Head(poison=True), data, "rgb+50", data_config=DataConfig(), workers=0, progress=False)

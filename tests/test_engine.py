"""The engine: several image sources, image-stage shifts, the logits it accepts, tied logits, protocol v2 records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch import nn
from torchvision import transforms as T

from conftest import few_images
from robustbench_ibn import DataConfig, EvalResult, evaluate
from robustbench_ibn.cli.eval import main
from robustbench_ibn.data import ImageNetVal
from robustbench_ibn.engine import Domain, Plan, RunConfig, run_plan
from robustbench_ibn.models import prepare_model
from robustbench_ibn.report import format_report
from robustbench_ibn.transforms import TRANSFORMS, Shift, TransformError, create_transform, register_transform

PIXELS = DataConfig(resize=40, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # the model sees raw pixels
RUN = dict(workers=0, progress=False, device="cpu")


@pytest.fixture(scope="module")
def data(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 5, tmp_path_factory.mktemp("val"))


class Spy(nn.Module):
    """Logits: a fixed projection of the mean colour; it keeps every input batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 1000)
        nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))
        nn.init.normal_(self.proj.bias, generator=torch.Generator().manual_seed(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.proj(x.mean((2, 3)))


class ImageIdentity(Shift):
    """Nothing, at the image stage."""

    stage = "image"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images


class ImageInvert(Shift):
    """Photographic negative of the whole decoded image."""

    stage = "image"
    label = "negative"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 1.0 - images


class ImageHalfStep(Shift):
    """Not 8-bit: moves every value by half a step."""

    stage = "image"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images + 0.5 / 255).clamp(0, 1)


class ImageNaNLater(Shift):
    """Fine on the first batch, NaN on the images of every later one (an overflowing generator)."""

    stage = "image"

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batches += 1
        return images if self.batches == 1 else torch.full_like(images, float("nan"))


@pytest.fixture
def image_shifts():
    with TRANSFORMS.snapshot():
        register_transform("img_identity")(ImageIdentity)
        register_transform("img_negative")(ImageInvert)
        register_transform("img_halfstep")(ImageHalfStep)
        register_transform("img_nan_later")(ImageNaNLater)
        yield


# -- image-stage shifts -----------------------------------------------------------------------------
def test_identity_at_the_image_stage_gives_the_clean_predictions_bit_for_bit(data, image_shifts):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 1000))
    result = evaluate(net, data, "img_identity,rgb+50", data_config=DataConfig(resize=64, crop=48), batch_size=2, **RUN)
    assert [d["stage"] for d in result.domains] == ["crop", "image", "crop"]
    assert np.array_equal(result.predictions["img_identity"], result.predictions["clean"])
    assert not np.array_equal(result.predictions["rgb+50"], result.predictions["clean"])


def test_an_image_stage_shift_acts_on_the_decoded_image_before_the_geometry(data, image_shifts):
    spy = Spy()
    result = evaluate(spy, data, "img_negative", data_config=PIXELS, batch_size=8, **RUN)
    clean, negative = spy.seen  # one pass each: the crops, then the image stage
    geometry = T.Compose([T.Resize(40), T.CenterCrop(32), T.PILToTensor()])
    paths = [data / rel for rel in result.images]
    by_hand = torch.stack([geometry(ImageOps.invert(Image.open(p).convert("RGB"))) for p in paths]).float() / 255
    assert torch.equal(negative, by_hand)  # exactly the crops of the inverted images, in image order
    assert torch.equal(clean, torch.stack([geometry(Image.open(p).convert("RGB")) for p in paths]).float() / 255)
    assert result.domains[1] == {**result.domains[1], "stage": "image", "label": "negative", "paired": True}
    assert result.domains[1]["shift"]["stage"] == "image"


def test_an_image_stage_output_must_hold_8_bit_values(data, image_shifts):
    with pytest.raises(TransformError, match=r"image-stage shift\) to return 8-bit values k/255 .* 0\.5/255"):
        evaluate(Spy(), data, "img_halfstep", data_config=PIXELS, **RUN)


def test_a_non_finite_image_stage_output_after_the_first_batch_stops_the_run(data, image_shifts):
    # cast to 8 bits, NaN would be a black image scored as any other
    with pytest.raises(TransformError, match=r"img_nan_later.* finite values, but got NaN or Inf on the batch starting"):
        evaluate(Spy(), data, "img_nan_later", data_config=PIXELS, batch_size=2, **RUN)


# -- several sources --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def second(sample_val, tmp_path_factory) -> Path:
    """Another ImageNet-val folder: 3 classes, 2 of them also in ``data``."""
    folder = tmp_path_factory.mktemp("second")
    for class_dir in sorted(sample_val.iterdir())[3:6]:
        (folder / class_dir.name).mkdir()
        for image in class_dir.iterdir():
            (folder / class_dir.name / image.name).symlink_to(image)
    return folder


def test_a_second_source_is_a_domain_of_its_own(data, second, tmp_path):
    spy = Spy()
    result = evaluate(spy, data, "rgb+50", data_config=PIXELS, sources={"val-b": second}, batch_size=2, **RUN)
    assert [(d["name"], d["source"], d["paired"]) for d in result.domains] == [
        ("clean", "val", True), ("rgb+50", "val", True), ("val-b", "val-b", False)]
    assert list(result.sources) == ["val", "val-b"] and len(result.sources["val-b"].labels) == 3
    # The same file gets the same prediction in either source: one engine, one preprocessing.
    val_rows = {rel: i for i, rel in enumerate(result.images)}
    for j, rel in enumerate(result.sources["val-b"].images):
        if rel in val_rows:
            assert np.array_equal(result.predictions["val-b"][j], result.predictions["clean"][val_rows[rel]])
    rows = {r.transform: r for r in result.results}
    assert rows["val-b"].source == "val-b" and rows["val-b"].n == 3
    assert rows["val-b"].top1_drop == pytest.approx(rows["val-b"].top1_err - rows["clean"].top1_err)
    # Intervals: its own resamples, deterministic per seed; no flip rate (other images).
    u = result.uncertainty(n_boot=200, seed=4)
    ci = {row["transform"]: row for row in u["rows"]}
    assert ci["val-b"]["flip_rate"] is None and ci["val-b"]["paired"] is False and ci["rgb+50"]["paired"] is True
    again = evaluate(Spy(), data, "rgb+50", data_config=PIXELS, sources={"val-b": second}, batch_size=3, **RUN)
    assert again.uncertainty(n_boot=200, seed=4)["rows"] == u["rows"]
    # The record keeps both sources; the report puts the other source's row after the shifts.
    result.save(tmp_path / "r.json")
    loaded = EvalResult.load(tmp_path / "r.json")
    assert loaded.predictions["val-b"].tolist() == result.predictions["val-b"].tolist()
    text = format_report([loaded], ci=True, n_boot=50)
    assert "data val-b: ImageNet val" in text and "no flip rate (other images)" in text
    labels = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    assert labels[:7] == ["transform", "origin", "95% CI", "RGB+50", "95% CI", "val-b", "95% CI"]
    flips = text.split("flip rate:")[1]
    assert "RGB+50" in flips and "val-b" not in flips


def test_a_plan_with_shifts_of_another_source(data, second, image_shifts):
    prepared = prepare_model(Spy(), data_config=PIXELS)
    sources = {"val": ImageNetVal(data, PIXELS), "b": ImageNetVal(second, PIXELS)}
    shift = create_transform("img_negative")
    plan = Plan(sources, (Domain("clean", "origin", "val"), Domain("b", "B", "b"),
                          Domain("b/negative", "B negative", "b", shift),
                          Domain("b/rgb+50", "B RGB+50", "b", create_transform("rgb+50"))))
    assert [(p.source, [d.name for d in p.domains]) for p in plan.passes()] == [
        ("val", ["clean"]), ("b", ["b", "b/rgb+50"]), ("b", ["b/negative"])]
    result = run_plan(plan, prepared, RunConfig(batch_size=2, **RUN))
    direct = run_plan(Plan({"val": sources["b"]}, (Domain("clean", "origin", "val"),
                                                   Domain("negative", "negative", "val", shift))),
                      prepare_model(Spy(), data_config=PIXELS), RunConfig(batch_size=3, **RUN))
    assert np.array_equal(result.predictions["b/negative"], direct.predictions["negative"])
    assert np.array_equal(result.predictions["b"], direct.predictions["clean"])


def test_a_natural_shift_dataset_is_scored_in_its_own_label_space(data, sample_val, tmp_path):
    """An ImageNet-R tree (its 200-class subset): predictions are the best of its 200 columns, in ImageNet indices."""
    from robustbench_ibn.datasets import create_dataset

    images = sorted(sample_val.glob("*/*.JPEG"))[:4]
    root = tmp_path / "imagenet-r"
    wnids = sorted(_r_wnids())[:2]
    for k, image in enumerate(images):
        (root / wnids[k % 2]).mkdir(parents=True, exist_ok=True)
        (root / wnids[k % 2] / image.name).symlink_to(image)
    source = create_dataset("imagenet-r", root, PIXELS)
    assert source.label_space.policy == "subset" and source.kind == "imagenet-r"
    result = evaluate(Spy(), data, "rgb+50", data_config=PIXELS, sources={"imagenet-r": source}, **RUN)
    allowed = set(source.label_space.columns().tolist())
    assert set(result.predictions["imagenet-r"].ravel().tolist()) <= allowed
    assert not set(result.predictions["clean"][:, 0].tolist()) <= allowed  # val keeps the 1000-way prediction
    assert result.sources["imagenet-r"].record["label_space"]["kind"] == "subset"
    row = {r.transform: r for r in result.results}["imagenet-r"]
    space = source.label_space
    right = space.correct(result.predictions["imagenet-r"][:, :1], np.array(source.labels)).sum()
    assert row.top1_err == pytest.approx(100 * (1 - right / 4))


def _r_wnids() -> list[str]:
    from robustbench_ibn.datasets import facts

    return [wnid for wnid, _ in facts.imagenet_r_classes()]


# -- logits -----------------------------------------------------------------------------------------
def test_a_class_mapped_model_with_minus_inf_logits_evaluates_end_to_end(capsys, data, tmp_path):
    """-Inf marks a class the model never predicts (ClassMapped's unmapped classes): allowed, and scored."""
    class_map = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    record = tmp_path / "r.json"
    code = main(["--model", "tv:resnet18", "--model-kwargs", f"num_classes=10,class_map={class_map}", "--weights",
                 "random", "--data", str(data), "--transforms", "rgb+50", "--workers", "0", "--no-progress",
                 "--output", str(record)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "| origin " in out
    predictions = np.array(json.loads(record.read_text())["predictions"]["clean"])
    assert set(predictions.ravel().tolist()) <= set(class_map)  # only mapped classes are ever predicted


class _Constant(nn.Module):
    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows.expand(x.shape[0], -1).clone() + 0 * x.mean()


def test_images_with_all_logits_equal_are_counted_and_warned_about(data):
    with pytest.warns(RuntimeWarning) as caught:
        result = evaluate(_Constant(torch.zeros(1, 1000)), data, "rgb+50", data_config=PIXELS, **RUN)
    assert [str(w.message).split(" got ")[0] for w in caught] == [  # once per domain, with the count
        "_Constant: 5 of 5 images of domain 'clean'", "_Constant: 5 of 5 images of domain 'rgb+50'"]
    assert "equal logits for every allowed class" in str(caught[0].message)
    assert result.tied == {"clean": 5, "rgb+50": 5}
    assert result.summary()["tied"] == result.tied
    fine = _Constant(torch.arange(1000.0).view(1, -1))
    assert evaluate(fine, data, "rgb+50", data_config=PIXELS, **RUN).tied == {"clean": 0, "rgb+50": 0}


@pytest.mark.parametrize("row,expected", [
    (torch.full((1, 1000), float("-inf")), r"1 image\(s\) have no finite logit \(all -Inf\)"),
    (torch.full((1, 1000), float("inf")), r"the logits hold NaN or Inf"),
])
def test_logits_without_a_finite_value_stop_the_run(data, row, expected):
    with pytest.raises(RuntimeError, match=r"model '_Constant' under shift 'clean' on the batch starting with .*"
                                           + expected):
        evaluate(_Constant(row[:, :]), data, "rgb+50", data_config=PIXELS, batch_size=1, **RUN)


# -- protocol v2 ------------------------------------------------------------------------------------
def test_std_gives_every_model_the_same_pixels(data):
    """A model normalized with mean 0.5 sees exactly the shifted pixels the paper's models see."""
    seen = {}
    for mean in ((0.485, 0.456, 0.406), (0.5, 0.5, 0.5)):
        spy = Spy()
        config = DataConfig(resize=40, crop=32, mean=mean, std=(0.25, 0.25, 0.25))
        evaluate(spy, data, "std1.5", data_config=config, batch_size=8, **RUN)
        # Normalized computes (x - mean) / std; undo it to read the pixels the shift produced.
        seen[mean] = spy.seen[1] * 0.25 + torch.tensor(mean).view(1, 3, 1, 1)
    paper, other = seen.values()
    torch.testing.assert_close(other, paper, rtol=0, atol=1e-6)
    imagenet = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    clean = spy.seen[0] * 0.25 + 0.5
    torch.testing.assert_close(other, imagenet + 1.5 * (clean - imagenet), rtol=0, atol=1e-6)


def test_the_fingerprint_ignores_the_model_geometry(data):
    small = evaluate(Spy(), data, "rgb+50", data_config=DataConfig(resize=40, crop=32), **RUN)
    large = evaluate(Spy(), data, "rgb+50", data_config=DataConfig(resize=48, crop=40), **RUN)
    assert small.protocol["fingerprint"] == large.protocol["fingerprint"]
    assert (small.data_config["crop"], large.data_config["crop"]) == (32, 40)
    other_shift = evaluate(Spy(), data, "r+50", data_config=DataConfig(resize=40, crop=32), **RUN)
    assert other_shift.protocol["fingerprint"] != small.protocol["fingerprint"]
    assert small.protocol["version"] == 4 and "drops in the same label space" in small.protocol["changes"]


def test_the_bootstrap_runs_once_per_seed(data, tmp_path, monkeypatch):
    from robustbench_ibn import results

    calls = []
    real = results.prediction_uncertainty
    monkeypatch.setattr(results, "prediction_uncertainty", lambda *a, **k: calls.append(k["seed"]) or real(*a, **k))
    result = evaluate(Spy(), data, "rgb+50", data_config=PIXELS, **RUN)
    result.summary()
    result.save(tmp_path / "a.json")
    result.to_dict()
    format_report([result], "json")
    assert calls == [0]
    result.uncertainty(seed=1)
    assert calls == [0, 1]


def test_a_schema_1_record_asks_for_a_rerun(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema_version": 1, "model": "resnet50"}))
    with pytest.raises(ValueError, match=re.escape("but got 1. Records of schema 1 were made under protocol version "
                                                   "1") + r".*re-run the evaluation with this version"):
        EvalResult.load(path)


@pytest.mark.parametrize("fields,message", [
    ({"batch_size": 0}, "Expected batch_size >= 1, but got 0."),
    ({"precision": "fp64"}, "Expected precision to be one of ('fp32', 'bf16', 'fp16'), but got 'fp64'."),
    ({"on_bad_image": "ignore"}, "Expected on_bad_image to be one of ('error', 'skip'), but got 'ignore'."),
    ({"workers": -1}, "Expected workers to be an integer >= 0 or None, but got -1."),
    ({"precision": "fp16", "device": "cpu"}, "fp16 autocast is CUDA-only here; use precision='bf16' on CPU."),
])
def test_run_config_is_validated_on_construction(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RunConfig(**fields)

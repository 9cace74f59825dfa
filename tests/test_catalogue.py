"""Every registered shift through the same contract tests, and the catalogue's own definitions.

The contract (shape, dtype, device, declared range, finiteness, determinism, batch independence, the
identity point) runs on every name :func:`list_transforms` returns, with each family's declared example
value, so a new built-in or an installed plug-in package is tested without writing a test. Check a
plug-in file or module of your own with::

    ROBUSTBENCH_IBN_TEST_PLUGINS=my_shifts.py[,package.module] .venv/bin/python -m pytest tests/test_catalogue.py
"""

from __future__ import annotations

import doctest
import importlib
import json
import math
import os

import pytest
import torch

from conftest import SHARED_DATA
from robustbench_ibn.plugins import load_entry_points, load_plugins
from robustbench_ibn.transforms import (
    Shift,
    TransformError,
    check_shift_output,
    create_transform,
    list_transforms,
    prepare_transforms,
    transform_spec,
    transform_takes,
)
from robustbench_ibn.transforms.color import temperature_gains
from robustbench_ibn.transforms.cyclegan import ResnetGenerator

load_entry_points()
load_plugins(filter(None, os.environ.get("ROBUSTBENCH_IBN_TEST_PLUGINS", "").split(",")))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
B = 7
KEYS = [f"n{1440764 + i:08d}/ILSVRC2012_val_{i:08d}.JPEG" for i in range(B)]


def batch(device: str = "cpu", b: int = B, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    """Random pixels in [0, 1] with exact black, white and saturated colours included."""
    x = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0
    x[:, :, 0, 2] = torch.tensor([1.0, 0.0, 0.0])
    return x.to(device)


STYLES = SHARED_DATA / "styles"  # 20 real paintings: the style pool of shifts that take --style-dir


@pytest.fixture(scope="session")
def style_weights(tmp_path_factory) -> dict[str, str]:
    """``--transform-weights`` for the network shifts: random weights in the official layouts (the real files are not
    downloaded in tests): the CycleGAN generator (``monet`` serves ``monet-official`` too) and AdaIN's two files."""
    from test_adain import save_weights  # AdaIN's layouts with a scale-keeping init (test_adain imports this module)

    folder = tmp_path_factory.mktemp("style")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(ResnetGenerator().state_dict(), folder / "random_generator.pth")
    weights = {style: str(folder / "random_generator.pth") for style in ("monet", "cezanne", "ukiyoe", "vangogh")}
    return {**weights, "adain": str(save_weights(folder / "adain"))}


def build(name: str, style_weights: dict[str, str] | None = None) -> Shift:
    """A shift as the engine uses it: built and set up by prepare_transforms (with the tests' weights and the shared
    style pool where the shift takes them), seeded."""
    style_dir = STYLES if transform_takes(name, "style_dir") else None
    try:
        return prepare_transforms([name], weights=style_weights, style_dir=style_dir, progress=False)[name]
    except TransformError as err:  # e.g. a plug-in's weights that are not on this machine (tests run offline)
        if transform_spec(name).origin.startswith("robustbench_ibn"):
            raise  # every built-in shift gets what it needs above
        pytest.skip(f"{name} needs set-up this machine cannot do: {err}")


def check_contract(name: str, device: str = "cpu", style_weights: str | None = None) -> None:
    """The contract every registered shift or family (its example member) must keep."""
    spec = transform_spec(name)
    assert spec.example_name is not None, (
        f"Expected family {name!r} ({spec.origin}) to declare example=... in register_transform, so it can be built "
        f"and tested, but it declares none."
    )
    shift = build(spec.example_name, style_weights)
    assert shift.label, f"{spec.example_name} has no display label"
    json.dumps(shift.definition())  # the record must be able to hold it
    if spec.is_family:
        assert shift.severity == {"family": spec.name, "param": spec.param, "value": spec.example,
                                  "identity": spec.identity}

    # A shift on a crop of its own (ImageNet-C's 224 px) gets that size, and 2 images: 57 times fewer pixels than 7
    # such crops, for the 19 corruptions' contract; its determinism checks are one (below).
    size = shift.crop_geometry[1] if shift.crop_geometry is not None else None
    x = batch(device) if size is None else batch(device, b=2, h=size, w=size)
    keys = KEYS[:x.shape[0]]
    before = x.clone()
    out = shift.apply_batch(x, keys)
    check_shift_output(shift, x, out)  # tensor, same shape, floating, same device, finite, declared range
    assert out.dtype == x.dtype
    assert torch.equal(x, before), f"{name} modified its input in place"
    if spec.name != "clean":
        assert not torch.equal(out, x), f"{spec.example_name} left the images unchanged"

    # Deterministic: again, with a fresh instance, and whatever the batch split (for a 224-px shift, all three at once:
    # a fresh instance, one image at a time).
    if size is None:
        assert torch.equal(shift.apply_batch(x, keys), out)
        assert torch.equal(build(spec.example_name, style_weights).apply_batch(x, keys), out)
        split = torch.cat([shift.apply_batch(x[i:i + 3], keys[i:i + 3]) for i in range(0, len(keys), 3)])
    else:
        fresh = build(spec.example_name, style_weights)
        split = torch.cat([fresh.apply_batch(x[i:i + 1], keys[i:i + 1]) for i in range(len(keys))])
    assert torch.equal(split, out), f"{spec.example_name}: an image's output depends on its batch or instance"

    if spec.is_family and spec.identity is not None:
        identity = build(spec.member(spec.identity), style_weights)
        assert torch.equal(identity.apply_batch(x, keys), x), f"{spec.member(spec.identity)} is not the identity"


@pytest.mark.parametrize("device", DEVICES)
# The in-memory twins of the ImageNet-C sets run their on-disk set's code without the JPEG save: test_imagenet_c_fly
# checks every one against its on-disk set (same draws, then the save) instead of running the whole contract twice.
@pytest.mark.parametrize("name", list_transforms(exclude="imagenet-c.*.memory"))
def test_every_registered_shift_keeps_the_contract(name, device, style_weights):
    check_contract(name, device, style_weights)


CATALOGUE = ["hue{deg}", "sat{f}", "gamma{g}", "grey{a}", "temp{kelvin}", "contrast{f}", "jpeg{q}", "noise{sigma}",
             "rgb+{k}", "rgb-{k}", "r+{k}", "r-{k}", "g+{k}", "g-{k}", "b+{k}", "b-{k}", "std{factor}"]


def test_catalogue_is_registered_with_declared_parameters():
    names = list_transforms()
    for template in CATALOGUE:
        assert template in names
        spec = transform_spec(template)
        assert spec.is_family and spec.example is not None and spec.param_help
        assert spec.origin.startswith("robustbench_ibn.transforms")
    assert [n for n in CATALOGUE if transform_spec(n).identity is None] == ["jpeg{q}"]
    assert transform_spec("temp3200").identity == 6500 and transform_spec("std2").identity == 1


def test_labels_and_records():
    labels = {n: create_transform(n).label for n in
              ["hue30", "sat0.5", "gamma2", "grey0.5", "temp3000", "contrast0.5", "jpeg20", "noise20", "b-10"]}
    assert labels == {"hue30": "hue+30", "sat0.5": "sat×0.5", "gamma2": "gamma2", "grey0.5": "grey0.5",
                      "temp3000": "3000K", "contrast0.5": "contrast×0.5", "jpeg20": "JPEG q20", "noise20": "noise20",
                      "b-10": "B-10"}
    record = create_transform("noise20").seeded(3).definition()
    assert record["severity"] == {"family": "noise{sigma}", "param": "sigma", "value": 20, "identity": 0}
    assert record["stochastic"]["seed"] == 3 and record["params"]["sigma"] == 20


def test_hue_rotation():
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(create_transform("hue120")(red).flatten(), torch.tensor([0.0, 1.0, 0.0]),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(create_transform("hue240")(red).flatten(), torch.tensor([0.0, 0.0, 1.0]),
                               atol=1e-6, rtol=0)
    x = batch()
    assert torch.equal(create_transform("hue360")(x), x)
    assert torch.equal(create_transform("hue390")(x), create_transform("hue30")(x))
    grey = torch.full((1, 3, 2, 2), 0.4)
    torch.testing.assert_close(create_transform("hue90")(grey), grey)  # no hue, nothing to rotate


def test_saturation_and_greyscale():
    x = torch.tensor([0.8, 0.4, 0.2]).view(1, 3, 1, 1)
    assert create_transform("sat0")(x).flatten().tolist() == pytest.approx([0.8, 0.8, 0.8])  # HSV: value kept
    assert create_transform("sat2")(x).flatten().tolist() == pytest.approx([0.8, 0.8 / 3, 0.0], abs=1e-6)  # s: 1
    half = create_transform("sat0.5")(x).flatten().tolist()
    assert half == pytest.approx([0.8, 0.6, 0.5], abs=1e-6)  # s 0.75 -> 0.375, hue kept
    y = 0.299 * 0.8 + 0.587 * 0.4 + 0.114 * 0.2
    assert create_transform("grey1")(x).flatten().tolist() == pytest.approx([y] * 3, abs=1e-6)
    assert create_transform("grey0.5")(x).flatten().tolist() == pytest.approx([(0.8 + y) / 2, (0.4 + y) / 2,
                                                                                (0.2 + y) / 2], abs=1e-6)
    with pytest.raises(TransformError, match=r"grey1\.5.*\[0, 1\]"):
        create_transform("grey1.5")


def test_gamma_and_contrast():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4).contiguous()
    assert create_transform("gamma2")(x)[0, 0, 0].tolist() == pytest.approx([0.0, 0.0625, 0.25, 1.0])
    assert create_transform("gamma0.5")(x)[0, 0, 0].tolist() == pytest.approx([0.0, 0.5, 0.70710678, 1.0])
    mean = x.mean().item()  # grey image: its grey level is the pixel value
    out = create_transform("contrast0.5")(x)[0, 0, 0]
    assert out.tolist() == pytest.approx([(v + mean) / 2 for v in [0.0, 0.25, 0.5, 1.0]])
    flat = create_transform("contrast0")(batch())
    assert torch.equal(flat, flat[:, :1, :1, :1].expand_as(flat))  # one grey level per image
    assert len(set(flat[:, 0, 0, 0].tolist())) == B  # ... and it is each image's own mean


def test_colour_temperature():
    assert temperature_gains(6500) == (1.0, 1.0, 1.0)
    grey = torch.full((1, 3, 1, 1), 0.5)
    r, g, b = create_transform("temp3000")(grey).flatten().tolist()
    assert r > g > b  # warm: tungsten light left uncorrected
    r, g, b = create_transform("temp10000")(grey).flatten().tolist()
    assert b > g > r  # cool
    for kelvin in (2000, 3000, 5000, 8000, 25000):
        gains = temperature_gains(kelvin)  # grey keeps its linear luminance
        assert sum(w * v for w, v in zip((0.2126, 0.7152, 0.0722), gains)) == pytest.approx(1.0)
    assert temperature_gains(3000)[0] > temperature_gains(4000)[0] > temperature_gains(5000)[0] > 1
    with pytest.raises(TransformError, match=r"temp1000.*\[2000, 25000\] K"):
        create_transform("temp1000")


def test_jpeg_is_the_real_codec_and_degrades_with_quality(calibration_batch):
    x = calibration_batch[:6]
    errors = {q: (create_transform(f"jpeg{q}")(x) - x).abs().mean().item() * 255 for q in (100, 75, 30, 10)}
    assert errors[100] < 2 < errors[30] < errors[10]  # q100 is close but not lossless (4:2:0 chroma, rounding)
    assert errors[100] < errors[75] < errors[30]
    out = create_transform("jpeg30")(x)
    assert torch.equal(out * 255, (out * 255).round())  # 8-bit decoded pixels
    for bad in ("jpeg0", "jpeg101", "jpeg50.5"):
        with pytest.raises(TransformError, match="integer in \\[1, 100\\]"):
            create_transform(bad)


def test_noise_is_reproducible_across_batch_sizes():
    """The same image gets the same noise whatever the batch size or order (a per-image seeded generator)."""
    x = batch(b=32, h=8, w=8)
    keys = [f"n01440764/img_{i}.JPEG" for i in range(32)]
    shift = create_transform("noise25").seeded(0)
    results = []
    for size in (1, 7, 32):
        results.append(torch.cat([shift.apply_batch(x[i:i + size], keys[i:i + size]) for i in range(0, 32, size)]))
    assert torch.equal(results[0], results[1]) and torch.equal(results[1], results[2])
    order = torch.randperm(32, generator=torch.Generator().manual_seed(1))
    shuffled = shift.apply_batch(x[order], [keys[i] for i in order])
    assert torch.equal(shuffled, results[2][order])
    # Another run seed, or another image identity, gives other noise; the same seed replays.
    other = create_transform("noise25").seeded(1).apply_batch(x, keys)
    assert not torch.equal(other, results[2])
    renamed = shift.apply_batch(x, [k + "x" for k in keys])
    assert not torch.equal(renamed, results[2])
    replay = create_transform("noise25").seeded(0).apply_batch(x, keys)
    assert torch.equal(replay, results[2])
    # It is N(0, (25/255)^2) noise where nothing clips.
    mid = torch.full((32, 3, 16, 16), 0.5)
    residual = shift.apply_batch(mid, keys) - mid
    assert residual.std().item() == pytest.approx(25 / 255, rel=0.05) and abs(residual.mean().item()) < 0.003


def test_seeded_generators_depend_on_seed_name_params_and_key():
    a = create_transform("noise10")
    draws = {}
    for label, shift, key in [("base", a, "k"), ("key", a, "k2"), ("name", create_transform("noise11"), "k")]:
        draws[label] = torch.rand(4, generator=shift.generator_for(key)).tolist()
    a.seed = 5
    draws["seed"] = torch.rand(4, generator=a.generator_for("k")).tolist()
    assert len({tuple(v) for v in draws.values()}) == 4


@pytest.mark.parametrize("module", ["robustbench_ibn.transforms.color", "robustbench_ibn.transforms.degradation",
                                    "robustbench_ibn.transforms._base"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_family_member_names_round_trip():
    spec = transform_spec("std{factor}")
    assert spec.member(1.5) == "std1.5" and spec.member(2) == "std2" and spec.member(0.0001) == "std0.0001"
    assert transform_spec(spec.member(0.0001)).name == "std{factor}"
    assert math.isclose(create_transform(spec.member(0.0001)).factor, 0.0001)

import pytest
import torch

from robustbench_ibn.data import IMAGENET_MEAN, IMAGENET_STD
from robustbench_ibn.transforms import (
    TRANSFORMS,
    TransformError,
    create_transform,
    list_transforms,
    register_transform,
    resolve_transform_names,
)
from robustbench_ibn.transforms.photometric import ChannelOffset


def pixels(*values: float) -> torch.Tensor:
    """A [1, 3, 1, len] batch: the same row of values in R, G and B."""
    row = torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)
    return row.expand(1, 3, 1, -1).clone()


def test_rgb_plus_50_adds_50_over_255_and_clips():
    x = pixels(0.0, 100 / 255, 1.0)
    out = create_transform("rgb+50")(x)
    expected = torch.tensor([50 / 255, 100 / 255 + 50 / 255, 1.0], dtype=torch.float32)
    for c in range(3):
        torch.testing.assert_close(out[0, c, 0], expected, rtol=0, atol=0)


def test_r_plus_50_touches_red_only():
    x = pixels(0.2, 0.9)
    out = create_transform("r+50")(x)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.2 + 50 / 255, 1.0]), rtol=0, atol=1e-7)
    assert torch.equal(out[0, 1:], x[0, 1:])


def test_uint8_equivalence_of_offsets():
    # On 8-bit inputs, adding 50/255 in float equals adding 50 to the byte then dividing (to float eps).
    u = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, -1).expand(1, 3, 1, -1)
    out = create_transform("rgb+50")(u.float() / 255)
    ref = (u.int() + 50).clamp(max=255).float() / 255
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,channel,amount", [("rgb-30", None, -30), ("g+80", 1, 80), ("b-10", 2, -10)])
def test_offset_families(name, channel, amount):
    x = pixels(0.5)
    out = create_transform(name)(x)
    for c in range(3):
        delta = amount / 255 if channel in (None, c) else 0.0
        assert out[0, c, 0, 0].item() == pytest.approx(0.5 + delta, abs=1e-7)


def test_std_scales_the_normalized_input_exactly():
    shift = create_transform("std1.5")  # no binding: the pivot is the fixed ImageNet mean (version 2)
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = shift(x)
    torch.testing.assert_close((out - mean) / std, 1.5 * (x - mean) / std, rtol=1e-6, atol=1e-6)
    assert out.max() > 1.0 or out.min() < 0.0  # std×1.5 does not clip, by definition


def test_std_is_version_2_pivoting_on_the_imagenet_mean():
    shift = create_transform("std2")
    assert shift.version == 2 and shift.params() == {"factor": 2.0, "center": [0.485, 0.456, 0.406], "clip": False}
    assert "ImageNet mean (0.485, 0.456, 0.406)" in shift.describe()
    x = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) + torch.tensor([0.1, -0.2, 0.0]).view(1, 3, 1, 1)
    expected = torch.tensor([0.685, 0.056, 0.406]).view(1, 3, 1, 1)  # mean + 2 * deviation, per channel
    torch.testing.assert_close(shift(x), expected, rtol=0, atol=1e-6)


def test_paper_labels():
    assert [create_transform(n).label for n in ["clean", "rgb+50", "r+50", "std1.5", "rgb-20", "std2"]] == [
        "origin", "RGB+50", "R+50", "std×1.5", "RGB-20", "std×2"]


def test_clean_is_identity_and_shifts_preserve_shape_dtype():
    x = torch.rand(3, 3, 8, 9)
    assert create_transform("clean")(x) is x
    for name in ["rgb+50", "r+50", "b-40"]:
        out = create_transform(name)(x)
        assert out.shape == x.shape and out.dtype == x.dtype and out.min() >= 0 and out.max() <= 1


def test_zero_severity_is_identity():
    x = torch.rand(2, 3, 4, 4)
    assert torch.equal(create_transform("rgb+0")(x), x)
    assert torch.equal(create_transform("std1")(x), x)


def test_bad_input_shape_named():
    with pytest.raises(TransformError, match=r"RGB\+50.*\[B, 3, H, W\]"):
        create_transform("rgb+50")(torch.rand(3, 4, 4))


def test_resolve_names():
    assert resolve_transform_names("rgb+50, r+50,std1.5,rgb+50") == ["clean", "rgb+50", "r+50", "std1.5"]
    assert resolve_transform_names(["std2"]) == ["clean", "std2"]
    with pytest.raises(TransformError, match="Did you mean: rgb"):
        resolve_transform_names("rbg+50")


def test_register_a_custom_shift():
    with TRANSFORMS.snapshot():
        @register_transform("mycast{k}")
        def mycast(k):
            return ChannelOffset("b", k)

        assert "mycast{k}" in list_transforms("my*")
        assert create_transform("mycast20").label == "B+20"
        with pytest.raises(ValueError, match="already registered"):
            register_transform("mycast{k}")(mycast)
    assert "mycast20" not in TRANSFORMS


def test_builder_must_return_a_shift():
    with TRANSFORMS.snapshot():
        register_transform("notashift")(lambda: torch.nn.Identity())
        with pytest.raises(TransformError, match="Expected transform 'notashift' to build"):
            create_transform("notashift")


@pytest.mark.parametrize(
    "make_output,message",
    [
        (lambda x: x[:, :2], "keep the batch shape"),
        (lambda x: (x * 255).to(torch.uint8), "floating-point"),
        (lambda x: x * float("nan"), "finite"),
        (lambda x: x + 2, "declared range"),
        (lambda x: x.numpy(), "torch.Tensor"),
    ],
)
def test_first_batch_check_names_the_shift(make_output, message):
    from robustbench_ibn.transforms import Shift, check_shift_output

    class Broken(Shift):
        def forward(self, images):
            return make_output(images)

    shift = Broken()
    shift.name = "broken"
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(TransformError, match=rf"transform 'broken' .*{message}"):
        check_shift_output(shift, x, shift.apply_batch(x, ["a", "b"]))

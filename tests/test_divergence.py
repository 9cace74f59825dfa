"""Feature divergence (IBN-Net Sec. 4.3): the formula, the streaming statistics, the layer positions, the
IBN-b std×1.5 property on calibrated random weights, and robust-divergence end to end on shared images."""

import doctest
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import few_images
import robustbench_ibn.divergence
from robustbench_ibn import create_model
from robustbench_ibn.cli.divergence import main
from robustbench_ibn.data import DataConfig, DataError
from robustbench_ibn.divergence import (
    ChannelMoments,
    FeatureRecorder,
    divergence_frame,
    feature_divergence,
    gaussian_kl,
    layer_divergence,
    measure_domains,
    resnet_positions,
    symmetric_kl,
)
from robustbench_ibn.models import Normalized
from robustbench_ibn.transforms import TRANSFORMS, Shift, create_transform, register_transform

f64 = torch.float64


# -- the formula ------------------------------------------------------------------------------------
def test_kl_matches_the_closed_form_and_torch_distributions():
    # N(0, 1) vs N(1, 2^2): KL(A||B) = log 2 + (1 + 1) / 8 - 1/2; KL(B||A) = log(1/2) + (4 + 1) / 2 - 1/2.
    t = lambda v: torch.tensor(v, dtype=f64)  # noqa: E731
    assert gaussian_kl(t(0.0), t(1.0), t(1.0), t(4.0)).item() == pytest.approx(math.log(2) - 0.25, abs=1e-15)
    assert gaussian_kl(t(1.0), t(4.0), t(0.0), t(1.0)).item() == pytest.approx(-math.log(2) + 2.0, abs=1e-15)
    # Symmetric: (var_A - var_B)^2 / (2 var_A var_B) + (mu_A - mu_B)^2 (1/var_A + 1/var_B) / 2 = 9/8 + 5/8.
    assert symmetric_kl(t(0.0), t(1.0), t(1.0), t(4.0)).item() == 1.75

    g = torch.Generator().manual_seed(0)
    mu_a, mu_b = torch.randn(500, generator=g, dtype=f64), torch.randn(500, generator=g, dtype=f64) * 3
    var_a, var_b = torch.rand(500, generator=g, dtype=f64) * 4 + 0.01, torch.rand(500, generator=g, dtype=f64) + 0.01
    normal = torch.distributions.Normal
    reference = torch.distributions.kl_divergence(normal(mu_a, var_a.sqrt()), normal(mu_b, var_b.sqrt()))
    torch.testing.assert_close(gaussian_kl(mu_a, var_a, mu_b, var_b), reference, rtol=1e-12, atol=1e-12)
    # The paper's formula, written out in numpy with sigmas.
    sa, sb, ma, mb = (x.numpy() for x in (var_a.sqrt(), var_b.sqrt(), mu_a, mu_b))
    paper = np.log(sb / sa) + (sa**2 + (ma - mb) ** 2) / (2 * sb**2) - 0.5
    np.testing.assert_allclose(gaussian_kl(mu_a, var_a, mu_b, var_b).numpy(), paper, rtol=1e-12, atol=1e-13)
    # D is the sum of both directions (the log terms cancel) and never negative.
    both = gaussian_kl(mu_a, var_a, mu_b, var_b) + gaussian_kl(mu_b, var_b, mu_a, var_a)
    torch.testing.assert_close(symmetric_kl(mu_a, var_a, mu_b, var_b), both, rtol=1e-12, atol=1e-12)
    assert (symmetric_kl(mu_a, var_a, mu_b, var_b) >= 0).all()


def moments(samples: torch.Tensor, chunk: int | None = None) -> ChannelMoments:
    m = ChannelMoments()
    for part in samples.split(chunk or len(samples)):
        m.update(part)
    return m


def test_layer_divergence_recovers_known_gaussians_from_samples():
    # Per channel: A ~ N(mu_a, sa^2), B ~ N(mu_b, sb^2); the estimate converges to the analytic mean D.
    g = torch.Generator().manual_seed(1)
    mu_a, mu_b = torch.tensor([0.0, 1.0, 5.0], dtype=f64), torch.tensor([1.0, 1.0, 5.5], dtype=f64)
    sa, sb = torch.tensor([1.0, 0.5, 2.0], dtype=f64), torch.tensor([2.0, 1.0, 2.0], dtype=f64)
    a = mu_a + sa * torch.randn(200_000, 3, generator=g, dtype=f64)
    b = mu_b + sb * torch.randn(150_000, 3, generator=g, dtype=f64)
    row = layer_divergence(moments(a, 7_777), moments(b, 10_000))
    analytic = symmetric_kl(mu_a, sa**2, mu_b, sb**2).mean().item()  # (1.75 + 1.125 + 0.0625) / 3
    assert analytic == pytest.approx((1.75 + 1.125 + 0.0625) / 3)
    assert row["divergence"] == pytest.approx(analytic, rel=0.02)
    assert row["kl_ab"] + row["kl_ba"] == pytest.approx(row["divergence"], rel=1e-12)
    assert row["channels"] == 3 and row["degenerate_channels"] == 0


def test_divergence_of_a_domain_with_itself_is_zero():
    g = torch.Generator().manual_seed(2)
    samples = torch.randn(64, 10, generator=g, dtype=f64) * 3 + 7
    samples[:, 3] = 0.0  # a dead ReLU channel: zero variance, guarded by eps
    same = layer_divergence(moments(samples, 5), moments(samples, 5))
    assert same["divergence"] == 0.0 and same["kl_ab"] == 0.0 and same["kl_ba"] == 0.0
    assert same["degenerate_channels"] == 1
    # Batched differently, the moments differ only by rounding.
    assert layer_divergence(moments(samples, 5), moments(samples))["divergence"] < 1e-20
    with pytest.raises(ValueError, match="eps > 0"):
        layer_divergence(moments(samples), moments(samples), eps=0.0)
    other = samples.clone()
    other[:, 0] += 1
    assert layer_divergence(moments(samples), moments(other))["divergence"] > 0


def test_streaming_statistics_equal_the_two_pass_computation():
    g = torch.Generator().manual_seed(3)
    # Offsets large against the spread: where raw running sums of F and F^2 lose digits.
    samples = torch.randn(1000, 16, generator=g, dtype=f64) * 0.1 + torch.linspace(-50, 50, 16, dtype=f64)
    whole = moments(samples)
    np_mean, np_var = samples.numpy().mean(0), samples.numpy().var(0, ddof=1)
    for chunk in (1, 3, 64, 999):
        m = moments(samples, chunk)
        assert m.n == 1000
        np.testing.assert_allclose(m.mean.numpy(), np_mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(m.variance().numpy(), np_var, rtol=1e-10)
        np.testing.assert_allclose(m.variance().numpy(), whole.variance().numpy(), rtol=1e-10)
    uneven = ChannelMoments()
    for start, stop in ((0, 1), (1, 400), (400, 401), (401, 1000)):
        uneven.update(samples[start:stop])
    np.testing.assert_allclose(uneven.variance().numpy(), np_var, rtol=1e-10)
    with pytest.raises(ValueError, match="at least 2 samples"):
        moments(samples[:1]).variance()


# -- positions and hooks ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, count", [("resnet50", 17), ("resnet50_ibn_a", 17), ("resnet50_ibn_b", 17),
                                         ("resnet18_ibn_b", 9), ("se_resnet50_ibn_a", 17), ("resnext50_ibn_a", 17)])
def test_resnet_positions_come_from_the_structure(name, count):
    positions = resnet_positions(create_model(name, weights="random"))
    assert len(positions) == count
    assert positions[0] == "relu" and positions[1] == "layer1.0" and positions[-1].startswith("layer4.")


def test_positions_through_a_wrapper_and_refusal_without_a_resnet_layout():
    wrapped = nn.Sequential(create_model("resnet18", weights="random"))
    assert resnet_positions(wrapped)[:2] == ["0.relu", "0.layer1.0"]
    with pytest.raises(ValueError, match="--layers"):
        resnet_positions(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))


def test_hooked_features_are_the_post_relu_stem_and_the_block_outputs():
    torch.manual_seed(0)
    net = create_model("resnet18", weights="random").eval()  # torchvision: adaptive pooling, small crops run
    x = torch.randn(3, 3, 64, 64)
    with FeatureRecorder(net, resnet_positions(net)) as recorder, torch.inference_mode():
        net(x)
        features = recorder.take()
        stem = net.relu(net.bn1(net.conv1(x)))
        block = net.layer1[0](net.maxpool(stem))
    assert (stem >= 0).all() and (stem == 0).any()  # post-ReLU
    torch.testing.assert_close(features["relu"], stem.double().mean((2, 3)))
    torch.testing.assert_close(features["layer1.0"], block.double().mean((2, 3)))
    assert features["layer4.1"].shape == (3, 512) and features["relu"].dtype == f64


def test_a_module_must_run_once_per_forward():
    relu = nn.ReLU()
    net = nn.Sequential(nn.Conv2d(3, 4, 3), relu, nn.Conv2d(4, 4, 3), relu)  # the same ReLU twice
    with pytest.raises(ValueError, match="ran 2 times"):
        measure_domains(net, net, [(torch.randn(2, 3, 8, 8), 0)], ["1"])
    with pytest.raises(ValueError, match="Expected a module name.*'conv'"):
        measure_domains(net, net, [(torch.randn(2, 3, 8, 8), 0)], ["conv"])
    stats = measure_domains(net, net, [(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]))], ["0", "2"])
    assert [s["2"].n for s in stats] == [2, 2] and stats[0]["0"].channels == 4


def test_streamed_model_statistics_equal_two_pass_on_the_recorded_features():
    torch.manual_seed(0)
    net = create_model("resnet18", weights="random").eval()
    x = torch.rand(12, 3, 64, 64)
    with FeatureRecorder(net, ["relu", "layer2.1"]) as recorder, torch.inference_mode():
        net(x)
        features = recorder.take()
    for f in features.values():
        m = moments(f, 5)
        np.testing.assert_allclose(m.mean.numpy(), f.numpy().mean(0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(m.variance().numpy(), f.numpy().var(0, ddof=1), rtol=1e-10, atol=1e-18)


# -- the IBN-b property -----------------------------------------------------------------------------
def std15_divergence(model: nn.Module, images: torch.Tensor):
    cfg = model.data_config
    shift = create_transform("std1.5")
    stats = measure_domains(Normalized(model, cfg.mean, cfg.std).eval(), model, [(images, 0), (shift(images), 1)])
    return divergence_frame(stats, model.model_name), stats


def test_ibn_b_removes_the_std15_divergence_from_its_first_in_layer_on(calibrated_models, calibration_batch):
    """IBN-b's stem is conv (no bias) -> IN -> ReLU: scaling the normalized input by 1.5 is undone by the IN
    (but for its eps), so every position from the stem on sees (nearly) the same features in both domains.
    ResNet-50's BN stem passes the scale on."""
    images = calibration_batch[:8]
    ibn_b, ibn_stats = std15_divergence(calibrated_models["resnet50_ibn_b"], images)
    resnet, _ = std15_divergence(calibrated_models["resnet50"], images)
    assert len(ibn_b) == len(resnet) == 17 and list(ibn_b["layer"]) == list(resnet["layer"])
    assert (resnet["divergence"] > 0.05).all(), resnet
    ratio = ibn_b["divergence"].to_numpy() / resnet["divergence"].to_numpy()
    assert (ratio < 1e-3).all(), ratio
    # Not vacuous: IBN-b's features do vary over the images at every position.
    for layer in ibn_b["layer"]:
        assert (ibn_stats[0][layer].variance() > 1e-6).float().mean() > 0.5
    assert (ibn_b["degenerate_channels"] == 0).all() and (ibn_b["n_a"] == 8).all()


# -- the API and the command end to end -------------------------------------------------------------
@pytest.fixture(scope="module")
def data(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 8, tmp_path_factory.mktemp("val"))


ARGS = ["--weights", "random", "--calibrate", "8", "--workers", "0", "--batch-size", "5", "--no-progress"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_two_shifts_table_json_and_plot(capsys, data, tmp_path):
    record, plot = tmp_path / "div.json", tmp_path / "fig.png"
    code, out, err = run(capsys, "--model", "resnet18,resnet18_ibn_b", *ARGS, "--domains", "clean,std1.5",
                         "--data", str(data), "--output", str(record), "--plot", str(plot))
    assert code == 0, err
    assert "weights: !!! RANDOM INIT (seed 0)" in out and "(every model)" in out
    assert "calibration: BatchNorm statistics" in out and "8 clean images" in out
    assert "A = origin (clean), B = std×1.5 (std1.5): the same 8 images, each decoded once" in out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("|") and "---" not in line]
    assert [c.strip() for c in rows[0][1:5]] == ["#", "layer", "resnet18 (random init, calibrated)",
                                                  "resnet18_ibn_b (random init, calibrated)"]
    body = rows[1:]
    assert [r[2].strip() for r in body] == resnet_positions(create_model("resnet18", weights="random"))
    resnet, ibn_b = np.array([[float(r[3]), float(r[4])] for r in body]).T
    assert (ibn_b < 1e-3 * resnet).all()
    saved = json.loads(record.read_text())
    assert saved["kind"] == "feature_divergence" and saved["mode"] == "shifts" and len(saved["rows"]) == 18
    assert [d["n"] for d in saved["domains"]] == [8, 8]
    assert {m["calibration"]["images"] for m in saved["models"]} == {8}
    assert plot.read_bytes()[:4] == b"\x89PNG" and "plot written" in err


def test_cli_content_split_json(capsys, data):
    code, out, err = run(capsys, "--model", "resnet18", *ARGS, "--content-split", "--data", str(data),
                         "--format", "json")
    assert code == 0, err
    printed = json.loads(out)
    a, b = printed["domains"]
    assert a["n"] == b["n"] == 4 and max(a["classes"]) < min(b["classes"])
    assert all(r["divergence"] > 0 for r in printed["rows"]) and len(printed["rows"]) == 9


def test_api_domain_folders_any_images_and_given_layers(data, tmp_path):
    # Domain B is a plain folder of images without ImageNet labels (as a second dataset would be).
    plain = tmp_path / "frames"
    plain.mkdir()
    for image in sorted(data.rglob("*.JPEG"))[4:]:
        (plain / f"frame_{image.name}").symlink_to(image.resolve())
    first = few_images(data, 4, tmp_path / "a")
    frame = feature_divergence("resnet18", domain_dirs=(first, plain), layers=["layer1", "layer4"], weights="random",
                               calibrate=4, workers=0, batch_size=3, progress=False)
    assert list(frame["layer"]) == ["layer1", "layer4"] and list(frame["n_a"]) == [4, 4]
    assert list(frame["n_b"]) == [4, 4] and (frame["divergence"] > 0).all()
    assert frame.attrs["mode"] == "dirs" and "image folder" in frame.attrs["data"][1]
    # The same folder on both sides: zero everywhere.
    same = feature_divergence("resnet18", domain_dirs=(first, first), layers=["relu"], weights="random",
                              workers=0, progress=False, data_config=DataConfig(resize=72, crop=64))
    assert same["divergence"].tolist() == [0.0]


def test_divergence_runs_on_the_engine_image_stage_and_bad_images_included(data, tmp_path):
    """The same batch iterator and shift application as evaluate(): an identity at the image stage gives exactly
    the clean features (divergence 0); an undecodable image is named, or left out, as in evaluate()."""
    class ImageIdentity(Shift):
        stage = "image"

        def forward(self, images):
            return images

    with TRANSFORMS.snapshot():
        register_transform("img_identity")(ImageIdentity)
        same = feature_divergence("resnet18", data, "clean,img_identity", layers=["relu", "layer4"], weights="random",
                                  workers=0, batch_size=3, progress=False)
    assert same["divergence"].tolist() == [0.0, 0.0] and [d["stage"] for d in same.attrs["domains"]] == [
        "crop", "image"]
    folder = tmp_path / "frames"
    folder.mkdir()
    for image in sorted(data.rglob("*.JPEG"))[:3]:
        (folder / image.name).symlink_to(image.resolve())
    (folder / "broken.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"1 of the 4 images cannot be decoded:\n  .*broken\.jpg: empty file"):
        feature_divergence("resnet18", domain_dirs=(folder, data), layers=["relu"], weights="random", workers=0,
                           progress=False)
    skipped = feature_divergence("resnet18", domain_dirs=(folder, data), layers=["relu"], weights="random", workers=0,
                                 progress=False, on_bad_image="skip")
    assert skipped["n_a"].tolist() == [3] and skipped.attrs["domains"][0]["skipped"] == ["broken.jpg"]


@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet18", "--domains", "clean,std1.5", "--calibrate"], "only with --weights random"),
    (["--model", "resnet18", "--weights", "random", "--domains", "clean,nope"], "nope"),
    (["--model", "resnet18", "--weights", "random", "--domains", "clean"], "exactly two shift names"),
    (["--model", "resnet18", "--weights", "random", "--domains", "clean,std1.5", "--layers", "layer9"],
     "Expected a module name"),
    (["--model", "tv:mobilenet_v3_small", "--weights", "random", "--domains", "clean,std1.5"], "--layers"),
    (["--model", "resnet18", "--weights", "random", "--content-split", "--domains", "clean,std1.5"], "not allowed"),
    (["--model", "resnet18", "--weights", "random", "--domains-dirs", "a,b"], "--data is not used"),
])
def test_cli_errors(capsys, data, argv, message):
    try:
        code = main([*argv, "--data", str(data), "--workers", "0", "--no-progress", "--limit", "2"])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "robust-divergence: error:" in err and message in err, err


def test_doctests():
    result = doctest.testmod(robustbench_ibn.divergence)
    assert result.attempted >= 5 and result.failed == 0


def test_console_script_is_declared():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'robust-divergence = "robustbench_ibn.cli.divergence:main"' in text

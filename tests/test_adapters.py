"""Backbones the user brings: torchvision (tv:), timm (timm:), torch.hub (hub:), class maps, plain nn.Modules.

Offline: torchvision weights are saved locally from a seeded build, the hub entry lives in a hubconf.py written
here, and the torch hub cache is a temporary folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from conftest import few_images
from robustbench_ibn import DataConfig, create_model, evaluate, model_info, register_model
from robustbench_ibn.cli.eval import main
from robustbench_ibn.models import MODELS, ClassMapped, ModelInfo, adapters
from robustbench_ibn.hub import WeightsError, file_sha256

TV = "mobilenet_v3_small"  # small, and its DEFAULT weights' preset is resize 256 / crop 224 bilinear
HAS_TIMM = importlib.util.find_spec("timm") is not None

HUBCONF = '''
dependencies = ["torch"]

import torch
from torch import nn


def tiny(pretrained=False, num_classes=1000):
    """A small classifier; "pretrained" weights are all 0.01 so tests can tell them apart."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, num_classes))
    if pretrained:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.01)
    return model


def not_a_model():
    return 42
'''


@pytest.fixture()
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache: nothing is found there unless a test puts it there."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    return hub


@pytest.fixture(scope="module")
def hubconf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("hubrepo")
    (repo / "hubconf.py").write_text(HUBCONF)
    return repo


@pytest.fixture(scope="module")
def tv_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(5)
    state = torchvision.models.get_model(TV, weights=None).state_dict()
    path = tmp_path_factory.mktemp("ckpt") / f"{TV}.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def two_images(sample_val: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return few_images(sample_val, 2, tmp_path_factory.mktemp("val"))


def assert_state_equal(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert got.keys() == state.keys()
    assert all(torch.equal(got[k], v) for k, v in state.items())


# --- torchvision ------------------------------------------------------------------------------------------------


def test_torchvision_info_comes_from_the_weights_api() -> None:
    weights = torchvision.models.get_model_weights("efficientnet_b0").DEFAULT
    info = model_info("tv:efficientnet_b0")
    preset = weights.transforms()
    assert info.data_config == DataConfig(resize=preset.resize_size[0], crop=preset.crop_size[0],
                                          interpolation="bicubic", mean=tuple(preset.mean), std=tuple(preset.std))
    assert (info.url, info.hash_prefix, info.num_params) == (weights.url, "7f5810bc", weights.meta["num_params"])
    assert info.ref_top1_err == round(100 - weights.meta["_metrics"]["ImageNet-1K"]["acc@1"], 2)
    assert info.has_weights and "torchvision" in info.tags
    assert model_info("efficientnet_b0") == info  # a plain torchvision name not registered here
    assert model_info("resnet50").name == "resnet50"  # a registered name wins over the adapter
    assert len(adapters.torchvision_models()) > 50 and "fasterrcnn_resnet50_fpn" not in adapters.torchvision_models()


def test_unknown_names_suggest() -> None:
    with pytest.raises(KeyError, match="Did you mean: efficientnet_b0"):
        model_info("tv:efficientnet_b00")
    with pytest.raises(KeyError, match=r"tv:NAME .*hub:OWNER/REPO:ENTRY"):
        model_info("no_such_model")


def test_torchvision_random_is_seeded() -> None:
    a, b = (create_model(f"tv:{TV}", weights="random", seed=3) for _ in range(2))
    assert_state_equal(a, b.state_dict())
    assert a.weights_source.is_random and a.data_config == model_info(f"tv:{TV}").data_config


def test_torchvision_local_weights_strict(tv_checkpoint: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = tv_checkpoint
    model = create_model(f"tv:{TV}", weights=str(path))
    assert_state_equal(model, state)
    assert (model.weights_source.kind, model.weights_source.sha256) == ("path", file_sha256(path))
    with pytest.raises(WeightsError, match="missing"):
        create_model("tv:shufflenet_v2_x0_5", weights=str(path))


def test_torchvision_official_through_the_hub_cache(
    tv_checkpoint: tuple[Path, dict[str, torch.Tensor]], hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Official weights: our hash-checked fetch, then torchvision's own loader reads the cached file."""
    path, state = tv_checkpoint
    url = model_info(f"tv:{TV}").url
    cached = hub_dir / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    # The real file's hash is not ours: the fetch must refuse it (no network is touched: it is in the cache).
    with pytest.raises(WeightsError, match="corrupt or not the expected file"):
        create_model(f"tv:{TV}")
    fetched: list[str] = []
    monkeypatch.setattr(adapters, "fetch", lambda u, prefix: (fetched.append(u), (cached, file_sha256(cached)))[1])
    model = create_model(f"tv:{TV}")
    assert fetched == [url]
    assert_state_equal(model, state)
    assert (model.weights_source.kind, model.weights_source.location) == ("official", url)


# --- class maps -------------------------------------------------------------------------------------------------


def test_non_imagenet_head_needs_a_class_map(hubconf: Path) -> None:
    with pytest.raises(ValueError, match="has 10 outputs.*class_map"):
        create_model(f"tv:{TV}", weights="random", num_classes=10)
    with pytest.raises(ValueError, match="has 10 outputs.*class_map"):
        create_model("resnet18_ibn_a", weights="random", num_classes=10)
    class_map = [3, 1, 4, 15, 9, 26, 5, 35, 897, 999]
    model = create_model(f"hub:{hubconf}:tiny", weights="random", num_classes=10, class_map=class_map)
    assert isinstance(model, ClassMapped) and model.data_config == DataConfig()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        raw, out = model.model(x), model(x)
    assert out.shape == (2, 1000)
    assert torch.equal(out[:, class_map], raw)
    assert torch.isinf(out).sum() == 2 * 990
    assert (out.argmax(1) == torch.tensor(class_map)[raw.argmax(1)]).all()


@pytest.mark.parametrize(("class_map", "message"), [
    ([1, 2, 3, 4, 4, 5, 6, 7, 8, 9], "duplicates"), ([1, 2, 3, 4, 5, 6, 7, 8, 9, 1000], "invalid"),
    ([1, 2, 3], "at least 5"), (list(range(12)), "one entry per output"),
])
def test_bad_class_maps(class_map: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model(f"tv:{TV}", weights="random", num_classes=10, class_map=class_map)


# --- torch.hub ----------------------------------------------------------------------------------------------------


def test_hub_local_entry(hubconf: Path, tmp_path: Path) -> None:
    name = f"hub:{hubconf}:tiny"
    a, b = (create_model(name, weights="random", seed=1) for _ in range(2))
    assert_state_equal(a, b.state_dict())
    assert a.weights_source.is_random and a.data_config == DataConfig()
    # random re-initialises whatever the entry returned, so "pretrained" values never survive as "random".
    again = create_model(name, weights="random", seed=1, pretrained=True)
    assert_state_equal(again, a.state_dict())
    official = create_model(name, pretrained=True)
    assert all(torch.all(p == 0.01) for p in official.parameters())
    assert official.weights_source.kind == "hub" and "tiny" in official.weights_source.describe()
    path = tmp_path / "tiny.pth"
    torch.save(a.state_dict(), path)
    assert_state_equal(create_model(name, weights=str(path)), a.state_dict())


@pytest.mark.parametrize(("spec", "error", "message"), [
    ("hub:nocolon", KeyError, "Expected hub:OWNER/REPO"),
    ("hub:./missing/dir:tiny", KeyError, "neither a local directory"),
    ("hub:{repo}:not_a_model", ValueError, "to return an nn.Module"),
    ("hub:{repo}:tiny", ValueError, "has 7 outputs"),
])
def test_hub_errors(hubconf: Path, spec: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        create_model(spec.format(repo=hubconf), weights="random", **({"num_classes": 7} if "7" in message else {}))


# --- timm -----------------------------------------------------------------------------------------------------------


def test_timm_data_config() -> None:
    """timm's eval geometry: shorter side to floor(crop / crop_pct), centre crop (pure function, no timm needed)."""
    cfg = {"input_size": (3, 224, 224), "crop_pct": 0.95, "interpolation": "bicubic", "mean": (0.5, 0.5, 0.5),
           "std": (0.5, 0.5, 0.5), "crop_mode": "center"}
    assert adapters.data_config_from_timm(cfg) == DataConfig(235, 224, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert adapters.data_config_from_timm({"input_size": (3, 288, 288), "crop_pct": 1.0}).resize == 288
    assert adapters.data_config_from_timm({"input_size": (3, 224, 224), "crop_pct": 0.875}).resize == 256
    with pytest.raises(ValueError, match="crop_mode 'center'"):
        adapters.data_config_from_timm({**cfg, "crop_mode": "squash"})
    with pytest.raises(ValueError, match="square"):
        adapters.data_config_from_timm({**cfg, "input_size": (3, 224, 256)})


@pytest.mark.skipif(HAS_TIMM, reason="timm is installed: the missing-timm message cannot be shown")
def test_timm_missing_says_how_to_get_it() -> None:
    with pytest.raises(ValueError, match="pip install timm"):
        model_info("timm:resnet18")


@pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed (optional): the timm: adapter is untested here")
def test_timm_model() -> None:
    import timm

    info = model_info("timm:resnet18")
    assert info.data_config.crop == timm.data.resolve_data_config(
        pretrained_cfg=timm.models.get_pretrained_cfg("resnet18").to_dict(), use_test_size=True)["input_size"][-1]
    a, b = (create_model("timm:resnet18", weights="random", seed=2) for _ in range(2))
    assert_state_equal(a, b.state_dict())


# --- any nn.Module, and end to end ---------------------------------------------------------------------------------


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=8), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x))


def test_registered_module_with_its_own_data_config(two_images: Path) -> None:
    config = DataConfig(resize=160, crop=128, interpolation="bicubic", mean=(0.5,) * 3, std=(0.25,) * 3)
    with MODELS.snapshot():
        register_model("my_tiny", info=ModelInfo(name="my_tiny", data_config=config))(lambda **kw: _Tiny(**kw))
        result = evaluate("my_tiny", two_images, "std1.5", weights="random", workers=0, progress=False)
    assert {k: result.data_config[k] for k in ("resize", "crop", "interpolation")} == {
        "resize": 160, "crop": 128, "interpolation": "bicubic"}
    assert result.data_config["mean"] == [0.5] * 3


@pytest.mark.parametrize("adapter", ["tv", "hub"])
def test_end_to_end(capsys: pytest.CaptureFixture[str], two_images: Path, hubconf: Path,
                    tv_checkpoint: tuple[Path, dict[str, torch.Tensor]], adapter: str) -> None:
    model, weights = (f"tv:{TV}", str(tv_checkpoint[0])) if adapter == "tv" else (f"hub:{hubconf}:tiny", "random")
    code = main(["--model", model, "--weights", weights, "--data", str(two_images), "--limit", "2", "--transforms",
                 "std1.5", "--no-progress", "--workers", "0", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f'"model": "{model}"' in out and '"n": 2' in out

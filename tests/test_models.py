"""ResNet-IBN-a/-b semantics and the torchvision baselines. Offline, CPU.

Keys, shapes and counts of all 20 official constructors against the reference are in test_zoo.py.
"""

from __future__ import annotations

import io
from functools import cache

import pytest
import torch
import torchvision
from torch import nn

from robustbench_ibn.models import MODELS, model_info
from robustbench_ibn.models.resnet_ibn import IBN, BottleneckIBN, ResNetIBN

# ibn_zoo.md section 4: where the INs of -b models sit (stem bn1 + last block of layer1/layer2).
IBN_B_INS = {
    "resnet18_ibn_b": {"bn1", "layer1.1.IN", "layer2.1.IN"},
    "resnet34_ibn_b": {"bn1", "layer1.2.IN", "layer2.3.IN"},
    "resnet50_ibn_b": {"bn1", "layer1.2.IN", "layer2.3.IN"},
    "resnet101_ibn_b": {"bn1", "layer1.2.IN", "layer2.3.IN"},
    "resnet152_ibn_b": {"bn1", "layer1.2.IN", "layer2.7.IN"},
}
TV_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


@cache
def build(name: str) -> nn.Module:
    """Raw registered builder (random init), cached: several tests only read the model."""
    torch.manual_seed(0)
    return MODELS.get(name)()


@cache
def meta_build(name: str) -> nn.Module:
    """The builder on the meta device: module tree and shapes without storage or init cost."""
    with torch.device("meta"):
        return MODELS.get(name)()


def shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(type(m) is kind for m in model.modules())


@pytest.mark.parametrize("name", list(IBN_B_INS))
def test_ibn_b_in_placement(name: str) -> None:
    model = meta_build(name)
    ins = {n for n, m in model.named_modules() if isinstance(m, nn.InstanceNorm2d)}
    assert ins == IBN_B_INS[name]
    assert not any(isinstance(m, IBN) for m in model.modules()), "-b models have no IBN split modules"


def test_ibn_a_placement() -> None:
    model = meta_build("resnet50_ibn_a")
    for stage, depth in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        layer = getattr(model, f"layer{stage}")
        assert len(layer) == depth
        for block in layer:
            assert isinstance(block.bn1, IBN) == (stage < 4)
            assert block.IN is None


def test_reference_errors() -> None:
    assert (model_info("resnet50_ibn_a").ref_top1_err, model_info("resnet50_ibn_a").ref_top5_err) == (22.54, 6.32)
    assert (model_info("resnet18_ibn_a").ref_top1_err, model_info("resnet18_ibn_a").ref_top5_err) == (29.17, 10.24)
    assert "22.76" in model_info("resnet50_ibn_a").ref_source
    # The paper's IBN-Net50-b (Table 1), from the reported entry that the leaderboard shows too (issue 17).
    info = model_info("resnet50_ibn_b")
    assert (info.ref_top1_err, info.ref_top5_err, info.reported) == (23.64, 6.86, "paper-table1")
    assert info.ref_source.startswith("IBN-Net paper (ECCV 2018), Table 1") and "README gives no numbers" in info.ref_source


def test_reference_errors_have_one_source() -> None:
    """Every IBN-Net model's reference errors are the clean row of the reported leaderboard entry it cites (the
    numbers the leaderboard page shows), never a second copy: each entry read here, compared field by field."""
    import json
    from importlib import resources

    clean = {}
    for path in resources.files("robustbench_ibn").joinpath("reported").iterdir():
        entry = json.loads(path.read_text(encoding="utf-8"))
        row = next(r for r in entry["results"] if r["transform"] == "clean")
        clean[entry["source"]["key"], entry["model"]] = (row["top1_err"], row["top5_err"])
    cited = 0
    for name in MODELS.list():
        info = model_info(name)
        if "ibn-net" not in info.tags:
            continue
        if info.reported is None:  # no numbers published for this model (or no weights at all)
            assert (info.ref_top1_err, info.ref_top5_err) == (None, None), name
            continue
        assert (info.ref_top1_err, info.ref_top5_err) == clean[info.reported, name], name
        cited += 1
    assert cited == 13  # 9 published files with numbers (8 in the README, IBN-Net50-b from the paper), 4 variants


@pytest.mark.parametrize("name", TV_NAMES)
def test_torchvision_baseline(name: str) -> None:
    model = meta_build(name)
    with torch.device("meta"):
        official = getattr(torchvision.models, name)(weights=None)
    assert shapes(model) == shapes(official)
    weights = getattr(torchvision.models, f"ResNet{name[6:]}_Weights").IMAGENET1K_V1
    info = model_info(name)
    assert info.url == weights.url
    assert weights.url.endswith(f"{name}-{info.hash_prefix}.pth") and len(info.hash_prefix) == 8
    assert info.num_params == weights.meta["num_params"] == sum(p.numel() for p in model.parameters())
    assert info.ref_top1_err == round(100 - weights.meta["_metrics"]["ImageNet-1K"]["acc@1"], 2)
    assert info.ref_top5_err == round(100 - weights.meta["_metrics"]["ImageNet-1K"]["acc@5"], 2)
    dc = info.data_config
    assert (dc.resize, dc.crop, dc.interpolation) == (256, 224, "bilinear")


def test_torchvision_reference_values() -> None:
    info = model_info("resnet50")
    assert (info.hash_prefix, info.ref_top1_err, info.ref_top5_err) == ("0676ba61", 23.87, 7.14)


@pytest.mark.parametrize("name", ["resnet18_ibn_a", "resnet18_ibn_b"])
def test_forward_224(name: str) -> None:
    model = build(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()


def test_avgpool_is_fixed() -> None:
    """The official fixed 7x7 pool is kept (not adaptive), so non-224 behaviour matches the official code."""
    pool = build("resnet18_ibn_a").avgpool
    assert type(pool) is nn.AvgPool2d and pool.kernel_size == 7 and pool.stride == 7


@pytest.mark.parametrize("name", ["resnet18_ibn_a", "resnet18_ibn_b"])
def test_state_dict_round_trip_strict(name: str) -> None:
    model = build(name)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    torch.manual_seed(1)
    fresh = MODELS.get(name)()
    fresh.load_state_dict(state, strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_ibn_split_order_exact() -> None:
    """IN gets the FIRST half of the channels, output concatenated IN first; BN (identity here) the rest."""
    ibn = IBN(4).eval()
    assert (ibn.half, ibn.IN.num_features, ibn.BN.num_features) == (2, 2, 2)
    x = torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).reshape(2, 4, 3, 3) ** 1.5
    with torch.no_grad():
        # Default eval BN: running mean 0, var 1, weight 1, bias 0 -> x / sqrt(1 + eps); make it exactly identity.
        ibn.BN.eps = 0.0
        ibn.IN.weight.copy_(torch.tensor([2.0, 3.0]))
        ibn.IN.bias.copy_(torch.tensor([0.5, -1.0]))
        out = ibn(x)
    first = x[:, :2]
    mean = first.mean(dim=(2, 3), keepdim=True)
    var = first.var(dim=(2, 3), unbiased=False, keepdim=True)
    expected_in = (first - mean) / torch.sqrt(var + 1e-5) * torch.tensor([2.0, 3.0]).view(1, 2, 1, 1)
    expected_in = expected_in + torch.tensor([0.5, -1.0]).view(1, 2, 1, 1)
    torch.testing.assert_close(out[:, :2], expected_in)
    assert torch.equal(out[:, 2:], x[:, 2:])


def test_ibn_ratio_and_widths() -> None:
    ibn = IBN(64, ratio=0.25)
    assert (ibn.IN.num_features, ibn.BN.num_features) == (16, 48)
    assert IBN(64, ratio=0.25)(torch.randn(2, 64, 4, 4)).shape == (2, 64, 4, 4)  # exactly two chunks
    assert IBN(63).half == 31  # int() truncation, as the official code
    with pytest.raises(ValueError, match="ratio"):
        IBN(64, ratio=0.0)


def test_ablation_knobs() -> None:
    model = MODELS.get("resnet50_ibn_a")(ibn_cfg=("a", None, None, None), in_ratio=0.25, num_classes=10)
    assert isinstance(model.layer1[0].bn1, IBN) and model.layer1[0].bn1.IN.num_features == 16
    assert not isinstance(model.layer2[0].bn1, IBN)
    assert model.fc.out_features == 10
    with pytest.raises(ValueError, match="ibn_cfg"):
        ResNetIBN(BottleneckIBN, (3, 4, 6, 3), ibn_cfg=("e", None, None, None))


def test_official_init() -> None:
    model = build("resnet18_ibn_b")
    conv = model.layer1[0].conv1
    expected_std = (2.0 / (3 * 3 * 64)) ** 0.5
    assert abs(conv.weight.std().item() - expected_std) < 0.1 * expected_std
    assert torch.equal(model.bn1.weight, torch.ones(64)) and torch.equal(model.layer1[1].IN.bias, torch.zeros(64))

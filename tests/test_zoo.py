"""The whole IBN-Net zoo, the paper's variants and ablation knobs, model metadata and golden logits. Offline, CPU.

Structure checks build on the meta device (shapes and module types, no memory, no init cost), so all 20 official
constructors and every registered model are checked in a second or two; only the golden-logit and checkpoint tests
build real weights, and only for small models.
"""

from __future__ import annotations

import json
import math
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from conftest import few_images
from robustbench_ibn import DataConfig, create_model
from robustbench_ibn.cli.eval import main
from robustbench_ibn.models import MODELS, list_models, model_info
from robustbench_ibn.hub import WeightsError
from robustbench_ibn.models._weights import load_weights
from robustbench_ibn.models.resnet_ibn import IBN, IBNConcat, PartialIN, parse_in_groups

IBN_KEYS = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "ibn_keys"
GOLDEN = Path(__file__).resolve().parent / "golden"
RELEASE = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/"

# ibn_zoo.md section 8 (counted on the official constructors): params, #BN, #IN, #state_dict keys.
ZOO: dict[str, tuple[int, int, int, int]] = {
    "resnet18_ibn_a": (11_689_512, 20, 6, 134),
    "resnet34_ibn_a": (21_797_672, 36, 13, 244),
    "resnet50_ibn_a": (25_557_032, 53, 13, 346),
    "resnet101_ibn_a": (44_549_160, 104, 30, 686),
    "resnet152_ibn_a": (60_192_808, 155, 47, 1026),
    "resnet18_ibn_b": (11_689_896, 19, 3, 123),
    "resnet34_ibn_b": (21_798_056, 35, 3, 219),
    "resnet50_ibn_b": (25_558_568, 52, 3, 321),
    "resnet101_ibn_b": (44_550_696, 103, 3, 627),
    "resnet152_ibn_b": (60_194_344, 154, 3, 933),
    "resnext50_ibn_a": (25_028_904, 53, 13, 346),
    "resnext101_ibn_a": (44_177_704, 104, 30, 686),
    "resnext152_ibn_a": (59_951_400, 155, 47, 1026),
    "se_resnet50_ibn_a": (28_071_976, 53, 13, 378),
    "se_resnet101_ibn_a": (49_292_328, 104, 30, 752),
    "se_resnet152_ibn_a": (66_770_984, 155, 47, 1126),
    "densenet121_ibn_a": (7_978_856, 121, 14, 755),
    "densenet169_ibn_a": (14_149_480, 169, 17, 1049),
    "densenet201_ibn_a": (20_013_928, 201, 22, 1251),
    "densenet161_ibn_a": (28_681_000, 161, 18, 1003),
}
# ibn_zoo.md section 2: the 12 published files (hash prefix) and README top-1/top-5 errors where reported; for
# resnet50_ibn_b, whose file the README gives no numbers for, the paper's IBN-Net50-b (Table 1).
PUBLISHED: dict[str, tuple[str, tuple[float, float] | None]] = {
    "resnet18_ibn_a": ("2f571257", (29.17, 10.24)),
    "resnet34_ibn_a": ("94bc1577", (25.78, 8.19)),
    "resnet50_ibn_a": ("d9d0bb7b", (22.54, 6.32)),
    "resnet101_ibn_a": ("59ea0ac6", (21.39, 5.59)),
    "resnet18_ibn_b": ("bc2f3c11", None),
    "resnet34_ibn_b": ("04134c37", None),
    "resnet50_ibn_b": ("9ca61e85", (23.64, 6.86)),
    "resnet101_ibn_b": ("c55f6dba", None),
    "resnext101_ibn_a": ("6ace051d", (20.88, 5.42)),
    "se_resnet101_ibn_a": ("fabed4e2", (21.25, 5.51)),
    "densenet121_ibn_a": ("e4af5cc1", (24.47, 7.25)),
    "densenet169_ibn_a": ("9f32c161", (23.25, 6.51)),
}
# PAPER.md Table 3, and the parameter counts of our builds (no official code: these guard against drift).
VARIANTS: dict[str, tuple[tuple[float, float], int]] = {
    "resnet50_ibn_c": ((22.78, 6.32), 29_800_872),
    "resnet50_ibn_d": ((22.86, 6.48), 25_557_800),
    "resnet50_ibn_ad": ((22.89, 6.48), 25_557_800),
    "resnet50_ibn_a2": ((22.81, 6.46), 25_557_032),
}
# Golden logits: (model, architecture kwargs). The last one walks every variant block kind in one small net.
GOLDEN_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet18_ibn_a": ("resnet18_ibn_a", {}),
    "resnet18_ibn_b": ("resnet18_ibn_b", {}),
    "resnext50_ibn_a": ("resnext50_ibn_a", {}),
    "se_resnet50_ibn_a": ("se_resnet50_ibn_a", {}),
    "densenet121_ibn_a": ("densenet121_ibn_a", {}),
    "resnet18_variant_kinds": ("resnet18_ibn_a", {"ibn_cfg": ("ad", "a2", "c", "d"), "in_ratio": 0.25}),
}
REGENERATE = "GOLDEN_ACCEPT=1 .venv/bin/python -m pytest tests/test_zoo.py -k golden"


@cache
def meta_build(name: str, **kwargs: Any) -> nn.Module:
    """The registered builder on the meta device: real module tree and shapes, no storage."""
    with torch.device("meta"):
        return MODELS.get(name)(**kwargs)


@cache
def random_model(name: str, **kwargs: Any) -> nn.Module:
    """``create_model(name, weights="random", seed=0)``, built once per module run (tests only read it)."""
    return create_model(name, weights="random", seed=0, **kwargs)


def shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count(model: nn.Module, kind: type[nn.Module], exact: bool = True) -> int:
    return sum((type(m) is kind) if exact else isinstance(m, kind) for m in model.modules())


def norm_types(model: nn.Module) -> dict[str, str]:
    """Module path -> class name of every norm layer (IBN containers included, their IN/BN children not)."""
    norms = (IBN, IBNConcat, nn.BatchNorm2d, nn.InstanceNorm2d)
    containers = {n for n, m in model.named_modules() if isinstance(m, (IBN, IBNConcat))}
    return {n: type(m).__name__ for n, m in model.named_modules()
            if isinstance(m, norms) and n.rpartition(".")[0] not in containers}


def reference(name: str) -> dict[str, list[int]]:
    path = IBN_KEYS / f"{name}.json"
    if not path.is_file():
        pytest.fail(f"Expected the official key reference {path} (../shared/reference/ibn_keys), but it is missing.")
    return json.loads(path.read_text())


# --- the 20 official constructors ------------------------------------------------------------------------------


def test_zoo_is_registered_and_reference_complete() -> None:
    assert sorted(p.stem for p in IBN_KEYS.glob("*.json")) == sorted(ZOO)
    assert set(ZOO) <= set(list_models())


@pytest.mark.parametrize("name", list(ZOO))
def test_official_keys_shapes_and_counts(name: str) -> None:
    expected, model = reference(name), meta_build(name)
    got = shapes(model)
    missing, unexpected = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    assert not missing and not unexpected, f"{name}: keys missing {missing[:10]}, unexpected {unexpected[:10]}"
    wrong = {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
    assert not wrong, f"{name}: shape mismatches (expected, got): {dict(list(wrong.items())[:10])}"
    params, n_bn, n_in, n_keys = ZOO[name]
    assert (n_params(model), count(model, nn.BatchNorm2d), count(model, nn.InstanceNorm2d), len(got)) == (
        params, n_bn, n_in, n_keys)


@pytest.mark.parametrize("name", list(ZOO))
def test_official_weights_metadata(name: str) -> None:
    info = model_info(name)
    assert info.num_params == ZOO[name][0] and info.license == "MIT" and "IBN-Net" in info.paper
    assert info.data_config == DataConfig()  # the official eval: 256 bilinear, crop 224, ImageNet mean/std
    if name in PUBLISHED:
        file_hash, err = PUBLISHED[name]
        assert (info.url, info.hash_prefix) == (f"{RELEASE}{name}-{file_hash}.pth", file_hash)
        assert (info.ref_top1_err, info.ref_top5_err) == (err if err else (None, None))
    else:
        assert info.url is None and info.hash_prefix is None and not info.has_weights
        with pytest.raises(WeightsError, match=f"{name} has no published weights"):
            load_weights(nn.Identity(), "official", info=info, seed=0)  # before any file is touched


def test_densenet_ibn_is_reversed() -> None:
    """DenseNet's IBN: BN on the first floor(0.6c) channels, IN on the rest, BN output first (ibn_zoo.md 3.2)."""
    model = meta_build("densenet121_ibn_a")
    blocks = model.features
    expected = {("denseblock1", "denselayer1"): (38, 26), ("denseblock2", "denselayer10"): (249, 167),
                ("denseblock3", "denselayer22"): (556, 372)}
    for (block, layer), widths in expected.items():
        ibn = getattr(getattr(blocks, block), layer).norm1
        assert isinstance(ibn, IBN) and not ibn.in_first
        assert (ibn.BN.num_features, ibn.IN.num_features, ibn.half) == (*widths, widths[0])
        assert list(ibn._modules) == ["BN", "IN"]  # official registration order
    ibn_layers = [n for n, m in model.named_modules() if isinstance(m, IBN)]
    assert all(n.startswith(("features.denseblock1", "features.denseblock2", "features.denseblock3"))
               for n in ibn_layers)
    assert all((int(n.split(".")[2].removeprefix("denselayer")) - 1) % 3 == 0 for n in ibn_layers)
    ibn = IBN(10, 0.4, in_first=False).eval()
    x = torch.randn(2, 10, 4, 4)
    with torch.no_grad():
        out = ibn(x)
    torch.testing.assert_close(out[:, :6], ibn.BN(x[:, :6]))
    torch.testing.assert_close(out[:, 6:], ibn.IN(x[:, 6:].contiguous()))


def test_se_before_addition_and_resnext_groups() -> None:
    se = meta_build("se_resnet50_ibn_a").layer1[0]
    assert list(se.se.fc[0].weight.shape) == [16, 256] and se.se.fc[0].bias is None
    resnext = meta_build("resnext50_ibn_a")
    assert [resnext.layer1[0].conv2.groups, *resnext.layer1[0].conv2.weight.shape] == [32, 128, 4, 3, 3]
    assert isinstance(resnext.layer3[5].bn1, IBN) and not isinstance(resnext.layer4[0].bn1, IBN)
    assert all(block.se is not None for stage in (1, 2, 3, 4) for block in getattr(
        meta_build("se_resnet50_ibn_a"), f"layer{stage}"))


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_se_acts_before_the_addition() -> None:
    """With SE replaced by zero and an identity shortcut, the block output is relu(input): SE is on the residual
    branch (after the addition it would zero the whole output)."""
    block = create_model("resnet50_ibn_a", weights="random", se_reduction=16).layer1[1].eval()
    block.se = _Zero()
    x = torch.randn(1, 256, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))


def test_fixed_pooling_kept() -> None:
    """The official fixed pools (ibn_zoo.md 9.9), checked by shape on the meta device (no compute)."""
    resnext, densenet = meta_build("resnext50_ibn_a").eval(), meta_build("densenet121_ibn_a").eval()
    assert type(resnext.avgpool) is nn.AvgPool2d and resnext.avgpool.kernel_size == 7
    with torch.device("meta"):
        assert resnext(torch.empty(1, 3, 320, 320)).shape == (1, 1000)  # 10x10 map: silently the top-left 7x7
        assert densenet(torch.empty(1, 3, 224, 224)).shape == (1, 1000)
        with pytest.raises(RuntimeError, match="too small"):  # 192 px -> 6x6 map: the fixed 7x7 pool fails
            densenet(torch.empty(1, 3, 192, 192))
        with pytest.raises(RuntimeError):  # 256 px -> 8x8 map -> 2x2 pooled: the classifier gets 4x the features
            densenet(torch.empty(1, 3, 256, 256))


@pytest.mark.parametrize("name", ["resnext50_ibn_a", "se_resnet50_ibn_a", "densenet121_ibn_a"])
def test_checkpoint_in_the_official_layout_loads_strictly(name: str, tmp_path: Path) -> None:
    """A file with exactly the official keys and shapes (from the reference JSON, values made up) loads."""
    # A distinct constant per tensor: cheap to make, and a value landing under the wrong key would show.
    state = {k: torch.tensor(i) if not shape else torch.full(shape, float(i))
             for i, (k, shape) in enumerate(reference(name).items())}
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    model = create_model(name, weights=str(path))
    got = model.state_dict()
    assert got.keys() == state.keys()
    assert all(torch.equal(got[k], v) for k, v in state.items())
    assert model.weights_source.kind == "path"


# --- golden logits ---------------------------------------------------------------------------------------------


def _golden_logits(name: str, kwargs: dict[str, Any]) -> torch.Tensor:
    model = random_model(name, **kwargs)
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x)[0].double()


@pytest.mark.parametrize("case", list(GOLDEN_CASES))
def test_golden_logits(case: str) -> None:
    """Seeded random init + a fixed input give fixed logits: any silent change of the architecture, the init or
    the forward shows here. Tolerances are relative to the logits' scale (CPU kernels differ by ~1e-6)."""
    name, kwargs = GOLDEN_CASES[case]
    logits = _golden_logits(name, kwargs)
    path = GOLDEN / f"{case}.json"
    if os.environ.get("GOLDEN_ACCEPT") == "1":
        GOLDEN.mkdir(exist_ok=True)
        record = {"model": name, "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
                  "seed": 0, "input": "torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))",
                  "first8": logits[:8].tolist(), "sum": logits.sum().item(), "absmax": logits.abs().max().item(),
                  "argmax": int(logits.argmax()), "torch": torch.__version__}
        path.write_text(json.dumps(record, indent=1) + "\n")
    if not path.is_file():
        pytest.fail(f"Expected golden logits {path}, but it is missing. Generate it with: {REGENERATE}")
    golden = json.loads(path.read_text())
    scale = golden["absmax"]
    how = (f"{case}: logits drifted from {path.name} (recorded with torch {golden['torch']}). If the change is "
           f"intended, regenerate with: {REGENERATE}")
    torch.testing.assert_close(logits[:8], torch.tensor(golden["first8"], dtype=torch.float64), rtol=1e-3,
                               atol=1e-4 * scale, msg=how)
    assert math.isclose(logits.sum().item(), golden["sum"], rel_tol=1e-3, abs_tol=1e-3 * scale), how
    assert math.isclose(logits.abs().max().item(), scale, rel_tol=1e-3), how


# --- the paper's variants (Fig. 4, Table 3) --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_metadata(name: str) -> None:
    info = model_info(name)
    err, params = VARIANTS[name]
    assert (info.ref_top1_err, info.ref_top5_err) == err and "Table 3" in info.ref_source
    assert info.url is None and "paper-variant" in info.tags
    assert info.num_params == params == n_params(meta_build(name))


def test_variant_c_concatenates_in_and_bn() -> None:
    model = meta_build("resnet50_ibn_c")
    for stage in (1, 2, 3):
        for block in getattr(model, f"layer{stage}"):
            width = block.conv1.out_channels
            assert isinstance(block.bn1, IBNConcat)
            assert block.bn1.IN.num_features == block.bn1.BN.num_features == width
            assert block.conv2.in_channels == 2 * width  # the "more parameters" of Fig. 4(a)
    assert not any(isinstance(m, IBNConcat) for m in model.layer4.modules())
    assert isinstance(model.bn1, nn.BatchNorm2d) and model.layer1[2].IN is None
    bn1 = IBNConcat(3).eval()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(bn1(x), torch.cat((bn1.IN(x), bn1.BN(x)), 1))


def test_variant_d_and_ad_half_in_after_addition() -> None:
    d = norm_types(meta_build("resnet50_ibn_d"))
    assert {k for k, v in d.items() if v in ("PartialIN", "IBN")} == {"bn1", "layer1.2.IN", "layer2.3.IN"}
    assert d["bn1"] == "IBN"  # the IBN-b stem IN becomes half IN, half BN
    model = meta_build("resnet50_ibn_d")
    assert (model.layer1[2].IN.num_features, model.layer2[3].IN.num_features) == (128, 256)
    ad = norm_types(meta_build("resnet50_ibn_ad"))
    assert {k for k, v in ad.items() if v == "PartialIN"} == {"layer1.2.IN", "layer2.3.IN"}
    assert {k for k, v in ad.items() if v == "IBN"} == {"bn1"} | {
        f"layer{s}.{i}.bn1" for s, n in ((1, 3), (2, 4), (3, 6)) for i in range(n)}
    half_in = PartialIN(4, 0.5).eval()
    x = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        out = half_in(x)
    assert torch.equal(out[:, 2:], x[:, 2:])  # the other half passes untouched
    torch.testing.assert_close(out[:, :2], nn.functional.instance_norm(x[:, :2], eps=half_in.eps))


def test_variant_a2_second_norm() -> None:
    types = norm_types(meta_build("resnet50_ibn_a2"))
    ibn = {k for k, v in types.items() if v == "IBN"}
    assert ibn == {f"layer{s}.{i}.bn{j}" for s, n in ((1, 3), (2, 4), (3, 6)) for i in range(n) for j in (1, 2)}


# --- ablations (Tables 4 and 5) ---------------------------------------------------------------------------------


def _ibn_stages(model: nn.Module) -> list[int]:
    return [s for s in (1, 2, 3, 4) if any(isinstance(m, (IBN, nn.InstanceNorm2d))
                                           for m in getattr(model, f"layer{s}").modules())]


@pytest.mark.parametrize(("in_groups", "stages"), [
    ("none", []), ("1", [1]), ("1-2", [1, 2]), ("1-3", [1, 2, 3]), ("1-4", [1, 2, 3, 4]), ((2, 4), [2, 4]), (3, [3]),
])
def test_table4_in_groups(in_groups: Any, stages: list[int]) -> None:
    model = meta_build("resnet50_ibn_a", in_groups=in_groups)
    assert _ibn_stages(model) == stages
    assert n_params(model) == ZOO["resnet50_ibn_a"][0]  # IBN adds no parameters


def test_in_groups_default_and_other_families() -> None:
    assert shapes(meta_build("resnet50_ibn_a", in_groups="1-3")) == shapes(meta_build("resnet50_ibn_a"))
    assert shapes(meta_build("resnet50_ibn_b", in_groups="1-2")) == shapes(meta_build("resnet50_ibn_b"))
    assert _ibn_stages(meta_build("se_resnet50_ibn_a", in_groups="1")) == [1]
    assert _ibn_stages(meta_build("resnext50_ibn_a", in_groups="none")) == []


@pytest.mark.parametrize("bad", ["5", "1-5", "x", "0", 1.5, True, (1, "2")])
def test_in_groups_errors(bad: Any) -> None:
    with pytest.raises(ValueError, match="Expected in_groups"):
        parse_in_groups(bad)


def test_in_groups_and_ibn_cfg_are_exclusive() -> None:
    with pytest.raises(ValueError, match="either in_groups or ibn_cfg"):
        MODELS.get("resnet18_ibn_a")(in_groups="1", ibn_cfg=("a", None, None, None))


def test_table5_in_ratio() -> None:
    plain = meta_build("resnet50_ibn_a", in_ratio=0)  # ratio 0 = ResNet-50 with the official key layout
    with torch.device("meta"):
        assert shapes(plain) == shapes(torchvision.models.resnet50())
    assert count(plain, nn.InstanceNorm2d, exact=False) == 0
    quarter = meta_build("resnet50_ibn_a", in_ratio=0.25).layer1[0].bn1
    assert (quarter.IN.num_features, quarter.BN.num_features) == (16, 48)
    full_layers = meta_build("resnet50_ibn_a", in_ratio=1)
    assert type(full_layers.layer3[5].bn1) is nn.InstanceNorm2d and count(full_layers, nn.InstanceNorm2d) == 13
    with pytest.raises(ValueError, match="in_ratio"):
        MODELS.get("resnet18_ibn_a")(in_ratio=1.5)


def test_table5_full_in() -> None:
    model = meta_build("resnet50_ibn_a", in_groups="none", all_in=True)
    assert count(model, nn.BatchNorm2d) == 0 and count(model, nn.InstanceNorm2d) == 53
    assert all(m.affine for m in model.modules() if isinstance(m, nn.InstanceNorm2d))


def test_torchvision_weights_load_into_the_plain_layout() -> None:
    """in_groups=none is ResNet with the official layout: torchvision's state_dict loads strictly."""
    model = create_model("resnet18_ibn_a", weights="random", in_groups="none")
    model.load_state_dict(torchvision.models.resnet18().state_dict(), strict=True)


# --- metadata schema (torchvision's test_schema_meta_validation) ------------------------------------------------


def _ours() -> list[str]:
    return [n for n in list_models() if MODELS.meta(n).get("origin", "").startswith("robustbench_ibn")]


def test_schema_meta_validation() -> None:
    problems = []
    for name in _ours():
        info = model_info(name)
        missing = [f for f in ("paper", "license", "ref_source") if not getattr(info, f)]
        if info.name != name or missing or not isinstance(info.data_config, DataConfig):
            problems.append(f"{name}: name {info.name!r}, empty fields {missing}")
        if info.num_params != n_params(meta_build(name)):
            problems.append(f"{name}: num_params {info.num_params} != built {n_params(meta_build(name))}")
        # Weights published through a package (load_official) may carry their file's hash prefix without a URL.
        if (info.url is None and info.load_official is None) != (info.hash_prefix is None) or (
            info.url and f"-{info.hash_prefix}." not in info.url
        ):
            problems.append(f"{name}: url {info.url} and hash_prefix {info.hash_prefix} disagree")
        errs = (info.ref_top1_err, info.ref_top5_err)
        if (errs[0] is None) != (errs[1] is None) or (errs[0] is not None and not 0 < errs[1] < errs[0] < 100):
            problems.append(f"{name}: reference errors {errs}")
    assert not problems, "\n".join(problems)
    assert len(_ours()) >= len(ZOO) + len(VARIANTS) + 5


# --- command line ------------------------------------------------------------------------------------------------


def test_list_models_shows_the_zoo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if not line.startswith("#")]
    assert set(ZOO) | set(VARIANTS) <= set(names)
    line = next(x for x in out.splitlines() if x.startswith("densenet169_ibn_a "))
    assert "9f32c161" in line and "23.25/6.51" in line and "14.1M params" in line
    assert "[paper variant, Table 3]" in next(x for x in out.splitlines() if x.startswith("resnet50_ibn_c "))
    assert "tv:NAME" in out and "hub:" in out


@pytest.fixture(scope="module")
def two_images(sample_val: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return few_images(sample_val, 2, tmp_path_factory.mktemp("val"))


@pytest.mark.parametrize("argv", [
    ["--model", "densenet121_ibn_a"],
    ["--model", "resnet18_ibn_a", "--model-kwargs", "in_groups=1-2,in_ratio=0.25"],
    ["--model", "resnet18_ibn_a", "--model-kwargs", "ibn_cfg=('ad','a2','c',None)"],
])
def test_end_to_end_random(capsys: pytest.CaptureFixture[str], two_images: Path, argv: list[str]) -> None:
    code = main([*argv, "--weights", "random", "--data", str(two_images), "--limit", "2", "--transforms", "std1.5",
                 "--no-progress", "--workers", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"model: {argv[1]}" in out and "RANDOM INIT" in out and "std×1.5" in out

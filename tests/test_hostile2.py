"""Hostile input, second round (issue 23, items 1-4): each case once gave a silently wrong number with exit 0.

1. a domain whose kind reads a sub-folder (``stylized-imagenet=ROOT`` reads ROOT/val) scored as another dataset;
2. ``--fast`` changing predictions: hooks on folded modules, batch-statistics BatchNorms padded with zeros;
3. NaN or Inf in style-network (and model) weights giving black, cached images;
4. a 16-bit PNG style image read as a white painting.

Folders for discovery are placeholder files (discovery never decodes); networks are tiny or random, inputs small.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from robustbench_ibn import DataConfig, ModelInfo, create_model, engine, evaluate, fast, register_model
from robustbench_ibn.cli.eval import main
from robustbench_ibn.data import imagenet_classes
from robustbench_ibn.datasets import check_domains
from robustbench_ibn.fast import FixedBatch, batch_dependent, fast_path, fold_batchnorm
from robustbench_ibn.hub import WeightsError
from robustbench_ibn.labels import ImageNet1k
from robustbench_ibn.models import MODELS
from robustbench_ibn.models.resnet_ibn import IBN
from robustbench_ibn.stylecache import cache_info
from robustbench_ibn.transforms import TransformError, create_transform
from robustbench_ibn.transforms.adain import StylePool, load_adain
from robustbench_ibn.transforms.cyclegan import ResnetGenerator, official_input, stylize

from conftest import SHARED_DATA, few_images
from test_adain import save_weights

WNIDS = [wnid for wnid, _ in imagenet_classes()]


# -- 1. domains are the folders their kinds read ----------------------------------------------------------
@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Releases as they unpack: a Stylized-ImageNet tree (val/ inside), ImageNet-Sketch (sketch/ inside), an
    ImageNet-C tree, and a link to the sketches; two classes of one placeholder image each."""
    root = tmp_path_factory.mktemp("releases")
    for classes in ("stylized/val", "sketch-release/sketch", "imagenet-c/fog/3", "imagenet-c/fog/4"):
        for wnid in WNIDS[:2]:
            (root / classes / wnid).mkdir(parents=True)
            (root / classes / wnid / "a.png").write_bytes(b"")
    (root / "sketch-link").symlink_to(root / "sketch-release" / "sketch")
    return root


# (domains, ImageNet val as --data, what the refusal says); {r} is the folder of releases.
OVERLAPS = {
    "stylized ROOT whose val/ is --data": (["stylized-imagenet={r}/stylized"], "{r}/stylized/val",
                                           r"ImageNet val's \(.*/stylized/val\), but domain stylized-imagenet is that "
                                           r"folder \(stylized-imagenet=.*/stylized reads .*/stylized/val\)"),
    "sketch X whose sketch/ is --data": (["imagenet-sketch={r}/sketch-release"], "{r}/sketch-release/sketch",
                                         r"but domain imagenet-sketch is that folder \(imagenet-sketch=.* reads "
                                         r".*/sketch-release/sketch\)"),
    "--data ROOT reads ROOT/val, a domain too": (["folder={r}/stylized/val"], "{r}/stylized",
                                                 r"but domain folder is that folder"),
    "one folder under two kinds": (["imagenet-sketch={r}/sketch-release", "folder:f={r}/sketch-link"], None,
                                   r"Expected each dataset folder once, but .*/sketch-link is given twice \(as "
                                   r"imagenet-sketch and f; imagenet-sketch=.* reads .*/sketch-release/sketch\)"),
    "an ImageNet-C tree and one of its sets": (["imagenet-c:all={r}/imagenet-c",
                                                "imagenet-c:fog3={r}/imagenet-c/fog/3"], None,
                                               r"but .*/imagenet-c/fog/3 \(domain fog3\) lies inside .*/imagenet-c "
                                               r"\(domain all\): the same images would be scored"),
}


@pytest.mark.parametrize("case", list(OVERLAPS))
def test_domains_are_compared_by_the_folders_their_kinds_read(folders: Path, case: str) -> None:
    specs, val, message = OVERLAPS[case]
    with pytest.raises(ValueError, match=message.replace("{r}", str(folders))):
        check_domains([s.format(r=folders) for s in specs], baseline=val and val.format(r=folders))


def test_sets_of_one_tree_side_by_side_are_still_two_datasets(folders: Path) -> None:
    specs = [f"imagenet-c:fog3={folders}/imagenet-c/fog/3", f"imagenet-c:fog4={folders}/imagenet-c/fog/4"]
    assert [d.name for d in check_domains(specs, baseline=folders / "stylized" / "val")] == ["fog3", "fog4"]


def test_robust_eval_refuses_the_val_folder_as_a_domain_with_exit_2(folders: Path, capsys, tmp_path: Path) -> None:
    code = main(["--model", "resnet18", "--weights", "random", "--transforms", "none", "--no-progress",
                 "--data", str(folders / "stylized" / "val"), "--domain", f"stylized-imagenet={folders}/stylized",
                 "--output", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and not (tmp_path / "r.json").exists()
    assert err.startswith("robust-eval: error: Expected a domain folder other than ImageNet val's") and \
        err.count("\n") == 1, err


# -- 2. --fast keeps the exact path's predictions, or does not compile / refuses ---------------------------
class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).relu()


class KeepsAdapting(nn.BatchNorm2d):
    """Test-time adaptation: ``eval()`` leaves it normalizing with each batch's statistics."""

    def train(self, mode: bool = True) -> KeepsAdapting:
        return super().train(True)


def small_net(seed: int = 0) -> nn.Sequential:
    """Two convolution + BatchNorm pairs (statistics far from the identity) and a 10-way head."""
    torch.manual_seed(seed)
    net = nn.Sequential(Block(), nn.Conv2d(6, 6, 1), nn.BatchNorm2d(6), nn.Flatten(), nn.Linear(6 * 6 * 6, 10))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _count(calls: list[int]) -> None:
    calls.append(1)


EDITS = {  # what each case does to the network; each calls `calls.append` where a hook runs
    "forward hook on a block that is traced through": lambda net, calls: net[0].register_forward_hook(
        lambda m, i, o: (_count(calls), o * 2)[1]),
    "forward hook on a folded convolution": lambda net, calls: net[1].register_forward_hook(
        lambda m, i, o: (_count(calls), o.clamp(min=0))[1]),
    "forward hook on a folded BatchNorm": lambda net, calls: net[2].register_forward_hook(
        lambda m, i, o: (_count(calls), o + 1)[1]),
    "pre-hook on a folded BatchNorm": lambda net, calls: net[2].register_forward_pre_hook(
        lambda m, i: (_count(calls), (i[0] * 3,))[1]),
    "a BatchNorm in training mode": lambda net, calls: net.__setitem__(2, KeepsAdapting(6)),
    "track_running_stats=False": lambda net, calls: net.__setitem__(2, nn.BatchNorm2d(6, track_running_stats=False)),
}


def batches(x: torch.Tensor) -> list[torch.Tensor]:
    """Batches of 4 and a short last one of 1, as a run of 5 images gives them, channels-last."""
    return [b.contiguous(memory_format=torch.channels_last) for b in x.split(4)]


@pytest.mark.parametrize("case", [c for c in EDITS if "hook" in c])
def test_hooks_keep_their_modules_unfolded_and_run_as_on_the_exact_path(case: str) -> None:
    """Before: the hook of a folded module saw other values or never ran, and one of a block ran once, at trace time."""
    net, calls = small_net(), []
    EDITS[case](net, calls)
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        exact = torch.cat([net(b) for b in batches(x)])
        hooks_exact = len(calls)
        folded = fold_batchnorm(net)
        del calls[:]
        got = torch.cat([folded.module(b) for b in batches(x)])
    torch.testing.assert_close(got, exact, rtol=0, atol=2e-5)
    assert got.argmax(1).tolist() == exact.argmax(1).tolist() and len(calls) == hooks_exact == 2
    assert len(folded.folded) == 1 and len(folded.kept) == 1 and "hooks" in folded.kept[0][1]


@pytest.mark.parametrize("case", [c for c in EDITS if "hook" not in c])
def test_batch_statistics_are_never_padded_by_the_fast_path(case: str) -> None:
    """Compiled (here with the "eager" backend) the short batch would be padded with zero images: other statistics."""
    net = small_net()
    EDITS[case](net, [])
    net.eval()
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        exact = torch.cat([net(b) for b in batches(x)])
        with pytest.warns(RuntimeWarning, match=r"not compiled: an image's output depends on the other images of its "
                                                r"batch \(2: "):
            path = fast_path(net, batches(x)[0], backend="eager")
        got = torch.cat([path.module(b) for b in batches(x)])
    torch.testing.assert_close(got, exact, rtol=0, atol=2e-5)
    assert got.argmax(1).tolist() == exact.argmax(1).tolist()
    record = path.record()
    assert (record["compiled"], record["compile_batch"], record["batchnorm_folded"]) == (False, None, 1)
    assert record["batchnorm_kept"][0]["name"] == "2" and "batch" in record["not_compiled_because"]


def test_hooks_on_an_ibn_layer_or_the_whole_model_keep_it_unfolded() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 1), IBN(8, ratio=0.5), nn.Flatten()).eval()
    net[1].BN.running_mean.uniform_(-1, 1)
    net[1].register_forward_pre_hook(lambda m, i: (i[0].abs(),))
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    folded = fold_batchnorm(net)
    assert folded.folded == () and dict(folded.kept) == {
        "1.BN": "the IBN layer has forward hooks or pre-hooks (folding would change what they see, or skip them)"}
    with torch.no_grad():
        torch.testing.assert_close(folded.module(x), net(x), rtol=0, atol=0)
    net[1]._forward_pre_hooks.clear()
    net.register_forward_hook(lambda m, i, o: o)
    with pytest.raises(ValueError, match=r"Cannot fold the BatchNorms of Sequential: it has forward hooks or "
                                         r"pre-hooks, .* run without the fast path"):
        fold_batchnorm(net)


def test_batch_dependent_modules_are_named() -> None:
    net = small_net()
    assert batch_dependent(net) == [] and batch_dependent(FixedBatch(net, 4)) == []  # OOM still retried in halves
    net[2] = KeepsAdapting(6)
    net.eval()
    assert batch_dependent(net) == ["2: KeepsAdapting, in training mode (normalizes with batch statistics)"]


def test_a_fast_run_of_a_batch_statistics_model_equals_the_exact_run(sample_val: Path, tmp_path_factory,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """5 images in batches of 3: before, the last batch of 2 was padded with a zero image (other statistics)."""
    monkeypatch.setattr(engine, "fast_path", functools.partial(fast.fast_path, backend="eager"))
    data = few_images(sample_val, 5, tmp_path_factory.mktemp("val5"))
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), KeepsAdapting(8), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(32, 1000))
    run = dict(data_config=DataConfig(resize=36, crop=32), batch_size=3, workers=0, progress=False)
    exact = evaluate(net, data, "none", **run)
    with pytest.warns(RuntimeWarning, match=r"not compiled: an image's output depends on the other images of its "
                                            r"batch \(model\.1: KeepsAdapting, in training mode"):
        quick = evaluate(net, data, "none", fast=True, **run)
    assert np.array_equal(quick.predictions["clean"], exact.predictions["clean"])
    assert quick.protocol["fast"]["compiled"] is False and quick.protocol["fast"]["compile_batch"] is None


def test_out_of_memory_is_not_retried_in_halves_for_a_batch_statistics_model() -> None:
    class OutOfMemory(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    net = nn.Sequential(nn.Conv2d(3, 3, 1), KeepsAdapting(3), OutOfMemory()).eval()
    with pytest.raises(RuntimeError, match=r"CUDA out of memory with 4 images \(here\), and not retried in halves: "
                                           r"an image's output depends on the other images of its batch \(1: "):
        engine.classify(net, torch.rand(4, 3, 4, 4), "here", ImageNet1k())


# -- 3. non-finite weights and outputs of the style networks (and of models) -----------------------------
def entries(cache: Path) -> int:
    return sum(ns.entries for ns in cache_info(cache))


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pool")
    (folder / "trial.jpg").write_bytes((SHARED_DATA / "styles" / "trial.jpg").read_bytes())
    return folder


@pytest.fixture(scope="module")
def adain_files(tmp_path_factory) -> Path:
    return save_weights(tmp_path_factory.mktemp("adain"))


def decoder_with(adain_files: Path, folder: Path, edit) -> str:
    """``ENCODER+DECODER`` with the module's encoder and its decoder edited by ``edit(state)``."""
    state = torch.load(adain_files / "decoder.pth")
    edit(state)
    folder.mkdir()
    torch.save(state, folder / "decoder.pth")
    return f"{adain_files / 'vgg_normalised.pth'}+{folder / 'decoder.pth'}"


def test_adain_weights_with_nan_are_refused(adain_files: Path, tmp_path: Path) -> None:
    weights = decoder_with(adain_files, tmp_path / "w", lambda state: state["28.bias"].view(-1)[0].fill_(float("nan")))
    with pytest.raises(TransformError, match=r"decoder\.pth holds NaN or Inf in 1 of its tensors \(28\.bias: 1 of 3 "
                                             r"values\).*expected the AdaIN decoder\.pth"):
        load_adain(*weights.split("+"))


def test_adain_outputs_that_overflow_are_refused_and_never_cached(adain_files: Path, tmp_path: Path,
                                                                  pool: Path) -> None:
    def overflow(state: dict[str, torch.Tensor]) -> None:  # finite, but the features overflow to Inf, then NaN
        for key in ("1.weight", "5.weight", "8.weight"):
            state[key] *= 1e20

    weights = decoder_with(adain_files, tmp_path / "w", overflow)
    shift = create_transform("adain1", weights=weights, style_dir=pool, cache_dir=tmp_path / "cache")
    shift.prepare(progress=False)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).mul(255).round().div(255)
    with pytest.raises(TransformError, match=r"Expected the AdaIN decoder to output finite values, but got NaN or Inf "
                                             r"for 1 of 1 images \(they would become black"):
        shift.apply_batch(x, ["a.JPEG", "b.JPEG"])  # on the CPU the decoder takes one image per call
    assert entries(tmp_path / "cache") == 0  # before: two black entries


def test_cyclegan_weights_with_inf_are_refused_and_nan_outputs_never_become_images(tmp_path: Path) -> None:
    generator = ResnetGenerator().eval()  # default init: finite
    state = generator.state_dict()
    state["model.1.weight"].view(-1)[3] = float("inf")
    torch.save(state, tmp_path / "style_monet.pth")
    with pytest.raises(TransformError, match=r"style_monet\.pth holds NaN or Inf in 1 of its tensors \(model\.1\.weight"
                                             r": 1 of 9408 values\).*official CycleGAN"):
        create_transform("monet", weights=tmp_path / "style_monet.pth", cache_dir=tmp_path).prepare(progress=False)
    with torch.no_grad():
        generator.model[1].weight.view(-1)[3] = float("nan")  # in memory, past the file's check
    with pytest.raises(TransformError, match="Expected the CycleGAN generator to output finite values"):
        stylize(generator, torch.rand(1, 3, 8, 8))


def test_a_model_checkpoint_with_a_minus_inf_bias_is_refused(tmp_path: Path) -> None:
    """-inf in a classifier bias: that class is never predicted, and -inf logits are allowed (class maps)."""
    make = lambda **kw: nn.Sequential(nn.Flatten(), nn.Linear(12, 1000))  # noqa: E731
    state = make().state_dict()
    state["1.bias"][7] = float("-inf")
    torch.save(state, tmp_path / "net.pth")
    with MODELS.snapshot():
        register_model("tiny_inf", info=ModelInfo(name="tiny_inf", data_config=DataConfig(resize=2, crop=2)))(make)
        with pytest.raises(WeightsError, match=r"net\.pth holds NaN or Inf in 1 of its tensors \(1\.bias: 1 of 1000 "
                                               r"values\)"):
            create_model("tiny_inf", str(tmp_path / "net.pth"))


# -- 4. 16-bit style images through the suite's one loader ------------------------------------------------
def test_a_16_bit_style_image_is_the_painting_not_white(tmp_path: Path) -> None:
    grey = np.asarray(Image.open(SHARED_DATA / "styles" / "trial.jpg").convert("L"))[:64, :64]
    Image.fromarray(grey).save(tmp_path / "a8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "b16.png")  # 16-bit greyscale (mode I;16)
    assert Image.open(tmp_path / "b16.png").mode.startswith("I")
    pool = StylePool.scan(tmp_path)
    eight, sixteen = pool.load(0, 32, 32), pool.load(1, 32, 32)
    assert torch.equal(sixteen, eight) and int(eight.max()) < 255  # before: all 255


def test_the_official_cyclegan_input_scales_a_16_bit_image() -> None:
    grey = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)  # 0, 257, ... 65535: 8-bit 0..255
    got = np.asarray(official_input(Image.fromarray(grey)))
    want = np.asarray(official_input(Image.fromarray((grey // 257).astype(np.uint8))))
    assert np.array_equal(got, want)

"""AdaIN with a style pool: official layouts, the AdaIN arithmetic, style choice and preprocessing, cache, errors.

Offline and fast: the two checkpoints are random weights in the pytorch-AdaIN layouts (written to temp dirs),
initialised so that features keep their scale and the decoder's output spreads over the 8-bit range (default
init would shrink relu4_1 features to ~1e-10, below AdaIN's eps, and the outputs to one grey). Content crops
are small; the style pool is the 20 real paintings in ../shared/data/styles (or a few of them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import SHARED_DATA, few_images
from robustbench_ibn import DataConfig, evaluate
from robustbench_ibn.data import ImageNetVal
from robustbench_ibn.options import command_line
from robustbench_ibn.stylecache import content_key
from robustbench_ibn.transforms import TransformError, create_transform, prepare_transforms
from robustbench_ibn.transforms import adain as adain_module
from robustbench_ibn.transforms.adain import (
    AdaINDecoder,
    AdaINStyle,
    NormalisedVGG,
    StylePool,
    adain_stylize,
    adaptive_instance_norm,
    feature_stats,
    load_adain,
    style_to_size,
    weights_files,
)
from test_catalogue import check_contract

STYLES = SHARED_DATA / "styles"

# The official layouts (pytorch-AdaIN net.py), written out independently: Sequential indices of the convs.
VGG_CONVS = {0: (3, 3, 1), 2: (64, 3, 3), 5: (64, 64, 3), 9: (128, 64, 3), 12: (128, 128, 3), 16: (256, 128, 3),
             19: (256, 256, 3), 22: (256, 256, 3), 25: (256, 256, 3), 29: (512, 256, 3), 32: (512, 512, 3),
             35: (512, 512, 3), 38: (512, 512, 3), 42: (512, 512, 3), 45: (512, 512, 3), 48: (512, 512, 3),
             51: (512, 512, 3)}
DECODER_CONVS = {1: (256, 512), 5: (256, 256), 8: (256, 256), 11: (256, 256), 14: (128, 256), 18: (128, 128),
                 21: (64, 128), 25: (64, 64), 28: (3, 64)}


def official_states(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Random (vgg_normalised.pth, decoder.pth) state_dicts in the official layouts, scale-keeping init."""
    generator = torch.Generator().manual_seed(seed)
    vgg = {}
    for i, (out, inp, k) in VGG_CONVS.items():
        vgg[f"{i}.weight"] = torch.randn(out, inp, k, k, generator=generator) * (2 / (inp * k * k)) ** 0.5
        vgg[f"{i}.bias"] = torch.zeros(out)
    decoder = {}
    for i, (out, inp) in DECODER_CONVS.items():
        decoder[f"{i}.weight"] = torch.randn(out, inp, 3, 3, generator=generator) * (2 / (inp * 9)) ** 0.5
        decoder[f"{i}.bias"] = torch.zeros(out)
    decoder["28.weight"] *= 0.2  # output around 0.5 with a spread of a few dozen grey levels
    decoder["28.bias"] += 0.5
    return vgg, decoder


def save_weights(folder: Path, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vgg, decoder = official_states(seed)
    torch.save(vgg, folder / "vgg_normalised.pth")
    torch.save(decoder, folder / "decoder.pth")
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_weights(tmp_path_factory.mktemp("adain_weights"))


@pytest.fixture(scope="module")
def networks(weights) -> tuple[nn.Module, nn.Module]:
    return load_adain(weights / "vgg_normalised.pth", weights / "decoder.pth")


@pytest.fixture
def pool3(tmp_path) -> Path:
    """A pool of three real paintings."""
    folder = tmp_path / "styles"
    folder.mkdir()
    for name in ("la_muse.jpg", "sketch.png", "trial.jpg"):
        shutil.copy(STYLES / name, folder / name)
    return folder


def crops(n: int = 2, h: int = 32, w: int = 40, seed: int = 1) -> torch.Tensor:
    """8-bit crops as the runner hands them over (uint8 / 255)."""
    return torch.randint(0, 256, (n, 3, h, w), generator=torch.Generator().manual_seed(seed)).float().div(255)


def shift(alpha: float, weights: Path, style_dir: Path, **kwargs) -> AdaINStyle:
    s = create_transform(f"adain{alpha}", weights=weights, style_dir=style_dir, **kwargs)
    s.prepare(progress=False)
    return s


def to_8_bits(y: torch.Tensor) -> torch.Tensor:
    """torchvision save_image's conversion, written out."""
    return torch.clamp(y * 255 + 0.5, 0, 255).to(torch.uint8)


class CountDecoder:
    """Counts decoder forward calls (monkeypatched onto the class, so every instance is counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.images = 0
        original = AdaINDecoder.forward

        def forward(module, x):
            self.images += len(x)
            return original(module, x)

        monkeypatch.setattr(AdaINDecoder, "forward", forward)


# --- architecture and loading ---------------------------------------------------------------------------


def test_networks_have_the_official_layout():
    vgg, decoder = NormalisedVGG(), AdaINDecoder()
    assert len(vgg) == 53 and len(decoder) == 29 and len(NormalisedVGG(31)) == 31
    assert {k: tuple(v.shape) for k, v in vgg.state_dict().items()} == {
        **{f"{i}.weight": (o, c, k, k) for i, (o, c, k) in VGG_CONVS.items()},
        **{f"{i}.bias": (o,) for i, (o, _, _) in VGG_CONVS.items()}}
    assert {k: tuple(v.shape) for k, v in decoder.state_dict().items()} == {
        **{f"{i}.weight": (o, c, 3, 3) for i, (o, c) in DECODER_CONVS.items()},
        **{f"{i}.bias": (o,) for i, (o, _) in DECODER_CONVS.items()}}
    # every 3x3 conv follows a 1-pixel reflection pad; pools are 2x2 ceil-mode; relu4_1 is module 30
    for net in (vgg, decoder):
        for i, m in enumerate(net):
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                assert isinstance(net[i - 1], nn.ReflectionPad2d) and net[i - 1].padding == (1, 1, 1, 1)
                assert m.padding == (0, 0)
    assert [i for i, m in enumerate(vgg) if isinstance(m, nn.MaxPool2d)] == [7, 14, 27, 40]
    assert all(vgg[i].ceil_mode and vgg[i].kernel_size == 2 for i in (7, 14, 27, 40))
    assert isinstance(vgg[30], nn.ReLU) and vgg[29].out_channels == 512
    assert [i for i, m in enumerate(decoder) if isinstance(m, nn.Upsample)] == [3, 16, 23]
    assert all(decoder[i].mode == "nearest" and decoder[i].scale_factor == 2 for i in (3, 16, 23))
    assert isinstance(decoder[28], nn.Conv2d)  # no activation at the end


def test_official_layout_files_load_strictly(weights, networks):
    encoder, decoder = networks
    vgg_saved, decoder_saved = official_states()
    assert len(encoder) == 31 and len(torch.load(weights / "vgg_normalised.pth", weights_only=True)) == 34
    assert encoder.state_dict().keys() == {k for k in vgg_saved if int(k.split(".")[0]) < 31}
    assert all(torch.equal(v, vgg_saved[k]) for k, v in encoder.state_dict().items())
    assert all(torch.equal(v, decoder_saved[k]) for k, v in decoder.state_dict().items())
    assert not any(p.requires_grad for p in [*encoder.parameters(), *decoder.parameters()])


def test_wrapped_and_prefixed_checkpoints_load(tmp_path, networks):
    vgg, decoder = official_states()
    torch.save({"state_dict": {f"module.{k}": v for k, v in vgg.items()}}, tmp_path / "v.pth")
    torch.save(decoder, tmp_path / "d.pth")
    encoder, _ = load_adain(tmp_path / "v.pth", tmp_path / "d.pth")
    assert torch.equal(encoder[29].weight, networks[0][29].weight)


@pytest.mark.parametrize(
    "role,edit,expected",
    [
        ("encoder", lambda s: s.update({"53.weight": torch.zeros(1)}), "unexpected: 53.weight"),
        ("encoder", lambda s: s.pop("51.bias"), "missing: 51.bias"),  # past relu4_1, but the layout must match
        ("encoder", lambda s: [s.pop(k) for k in list(s) if int(k.split(".")[0]) > 30],
         "14 missing, 0 unexpected, 0 mis-shaped key(s)"),  # a VGG cut at relu4_1 is not the official file
        ("decoder", lambda s: s.update({"28.bias": torch.zeros(4)}), "28.bias expected [3] got [4]"),
        ("decoder", lambda s: s.update({"0.weight": s.pop("1.weight")}), "missing: 1.weight"),
    ],
)
def test_wrong_layout_lists_the_mismatches(tmp_path, role, edit, expected):
    states = dict(zip(("encoder", "decoder"), official_states()))
    edit(states[role])
    torch.save(states["encoder"], tmp_path / "vgg_normalised.pth")
    torch.save(states["decoder"], tmp_path / "decoder.pth")
    what = {"encoder": "the AdaIN encoder", "decoder": "the AdaIN decoder"}[role]
    with pytest.raises(TransformError, match=f"does not fit {what}") as err:
        load_adain(tmp_path / "vgg_normalised.pth", tmp_path / "decoder.pth")
    file = {"encoder": "vgg_normalised.pth", "decoder": "decoder.pth"}[role]
    assert expected in str(err.value) and str(tmp_path / file) in str(err.value)


def test_swapped_files_are_recognised(weights):
    with pytest.raises(TransformError, match="other way round") as err:
        load_adain(weights / "decoder.pth", weights / "vgg_normalised.pth")
    assert "30 missing, 14 unexpected, 4 mis-shaped" in str(err.value)  # the decoder shares 5.* and 25.* names


def test_unreadable_weights_file_is_refused(tmp_path, weights):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TransformError, match="cannot read .*junk.pth.*expected the AdaIN decoder.pth"):
        load_adain(weights / "vgg_normalised.pth", tmp_path / "junk.pth")


# --- the AdaIN arithmetic -----------------------------------------------------------------------------------


def test_feature_stats_are_the_official_unbiased_ones():
    x = torch.tensor([[1.0, 2.0], [4.0, 7.0]]).view(1, 1, 2, 2)
    mean, std = feature_stats(x)
    var = ((1 - 3.5) ** 2 + (2 - 3.5) ** 2 + (4 - 3.5) ** 2 + (7 - 3.5) ** 2) / 3  # divisor HxW - 1
    assert mean.shape == std.shape == (1, 1, 1, 1) and mean.item() == 3.5
    assert std.item() == pytest.approx((var + 1e-5) ** 0.5, rel=1e-7)
    flat = torch.zeros(1, 1, 3, 3)  # a dead channel: eps keeps it finite
    assert feature_stats(flat)[1].item() == pytest.approx(1e-5 ** 0.5)


def test_after_adain_each_channel_has_the_style_statistics():
    g = torch.Generator().manual_seed(0)
    scale = torch.rand(4, 512, 1, 1, generator=g) * 3 + 0.5  # per-channel spreads like relu features
    content = torch.relu(torch.randn(4, 512, 28, 28, generator=g) * scale + 0.3)
    style = torch.relu(torch.randn(4, 512, 20, 24, generator=g) * scale.flip(0) + 0.1)
    t = adaptive_instance_norm(content, *feature_stats(style))
    torch.testing.assert_close(t.mean((2, 3)), style.mean((2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(t.std((2, 3)), style.std((2, 3)), atol=1e-4, rtol=1e-4)
    # ... and it is the official expression: normalise by the content's statistics, then apply the style's
    c_mean = content.mean((2, 3), keepdim=True)
    c_std = (content.flatten(2).var(2) + 1e-5).sqrt()[..., None, None]
    s_std = (style.flatten(2).var(2) + 1e-5).sqrt()[..., None, None]
    torch.testing.assert_close(t, (content - c_mean) / c_std * s_std + style.mean((2, 3), keepdim=True))


def test_alpha_0_is_the_reconstruction_and_alpha_1_full_style(weights, networks, pool3):
    encoder, decoder = networks
    x = crops(2, 32, 32)  # square, a multiple of 8: no padding
    keys = ["n01/a.JPEG", "n02/b.JPEG"]
    with torch.no_grad():
        reconstruction = to_8_bits(decoder(encoder(x)))
    exact = {"channels_last": False, "cache": False, "batch_size": 2}  # the computation of the references below
    out0 = shift(0, weights, pool3, **exact)(x, keys)
    assert torch.equal(out0, reconstruction.float() / 255)
    assert not torch.equal(out0, x)  # no identity: the autoencoder's reconstruction is not the input
    # alpha 1 (and 0.5) by hand: each style as Geirhos prepares it (centre square crop, Lanczos), encoded alone
    s1, s05 = shift(1, weights, pool3, **exact), shift(0.5, weights, pool3, **exact)
    styles = s1.choose_styles(keys)
    assert styles == s05.choose_styles(keys)  # the same painting for every alpha
    pool = StylePool.scan(pool3)
    stats = []
    for s in styles:
        image = Image.open(pool3 / pool.names[s]).convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        square = image.crop((left, top, left + side, top + side)).resize((32, 32), Image.LANCZOS)
        style = torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1)[None].float() / 255
        stats.append(feature_stats(encoder(style)))
    mean, std = torch.cat([m for m, _ in stats]), torch.cat([s for _, s in stats])
    with torch.no_grad():
        f = encoder(x)
        t = adaptive_instance_norm(f, mean, std)
        assert torch.equal(s1(x, keys), to_8_bits(decoder(t * 1.0 + f * 0.0)).float() / 255)
        assert torch.equal(s05(x, keys), to_8_bits(decoder(t * 0.5 + f * 0.5)).float() / 255)


def test_output_is_8_bit_in_range_and_fp32_under_autocast(weights, pool3):
    s = shift(1, weights, pool3, cache=False)
    x, keys = crops(2, 24, 24), ["a", "b"]
    out = s(x, keys)
    assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out * 255, (out * 255).round())
    assert (out * 255).unique().numel() > 20  # the synthetic decoder spreads over the 8-bit range
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(s(x, keys), out)
    contiguous = shift(1, weights, pool3, cache=False, channels_last=False)
    assert (contiguous(x, keys) - out).abs().max() <= 1 / 255 + 1e-7  # memory format: float rounding only


@pytest.mark.parametrize("size", [(9, 13), (33, 38), (12, 10)])
def test_awkward_sizes_keep_their_size(networks, size):
    encoder, decoder = networks
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    mean, std = feature_stats(encoder(torch.rand(1, 3, 24, 24)))
    with torch.no_grad():
        assert decoder(encoder(x)).shape[-2:] == tuple(-(-s // 8) * 8 for s in size)  # why we pad
        out = adain_stylize(encoder, decoder, x, mean, std, 1.0)
        assert out.shape == x.shape and out.dtype == torch.uint8
        h, w = size
        ph, pw = max(16, -(-h // 8) * 8) - h, max(16, -(-w // 8) * 8) - w
        padded = nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")
        y = decoder(adaptive_instance_norm(encoder(padded), mean, std))[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]
    assert torch.equal(out, to_8_bits(y))


def test_too_small_images_are_refused(networks):
    encoder, decoder = networks
    with pytest.raises(TransformError, match="at least 9x9"):
        adain_stylize(encoder, decoder, torch.rand(1, 3, 8, 30), torch.zeros(1, 512, 1, 1), torch.ones(1, 512, 1, 1), 1)


# --- style images and their choice ----------------------------------------------------------------------------


def test_style_images_are_geirhos_centre_square_and_lanczos():
    for name in ("la_muse.jpg", "woman_in_peasant_dress.jpg", "sketch.png"):  # landscape, portrait, square
        image = Image.open(STYLES / name).convert("RGB")
        ours = style_to_size(image, 224, 224)
        # Geirhos' crop_square_and_downsample with the Pillow of 2018 (thumbnail without the reducing_gap step)
        side = min(image.size)
        left, top = int((image.width - side) / 2), int((image.height - side) / 2)
        geirhos = image.crop((left, top, left + side, top + side))
        geirhos.thumbnail((224, 224), Image.LANCZOS, reducing_gap=None)
        assert np.array_equal(np.asarray(ours), np.asarray(geirhos))
    wide = style_to_size(Image.open(STYLES / "la_muse.jpg").convert("RGB"), 20, 40)  # 1200x1000 -> 1200x600 region
    by_hand = Image.open(STYLES / "la_muse.jpg").convert("RGB").crop((0, 200, 1200, 800))
    by_hand = by_hand.resize((40, 20), Image.LANCZOS)
    assert wide.size == (40, 20) and np.array_equal(np.asarray(wide), np.asarray(by_hand))


def test_style_choice_is_the_documented_rule_and_independent_of_batching(weights):
    s = shift(1, weights, STYLES)
    s.seed = 3
    keys = [f"n{i:08d}/ILSVRC2012_val_{i:08d}.JPEG" for i in range(32)]
    n = len(s.pool)
    expected = [int.from_bytes(hashlib.sha256(f"3:{k}".encode()).digest()[:8], "little") % n for k in keys]
    by_batch = {b: sum((s.choose_styles(keys[i:i + b]) for i in range(0, 32, b)), []) for b in (1, 7, 32)}
    assert by_batch[1] == by_batch[7] == by_batch[32] == expected
    ranks = {r: dict(zip(keys[r::2], s.choose_styles(keys[r::2]))) for r in (0, 1)}  # two disjoint key lists
    assert [{**ranks[0], **ranks[1]}[k] for k in keys] == expected
    assert len(set(expected)) > 10  # spread over the pool
    fresh = shift(0.5, weights, STYLES).seeded(3)  # another alpha, another instance
    assert fresh.choose_styles(keys) == expected
    assert shift(1, weights, STYLES).seeded(4).choose_styles(keys) != expected


def test_pixels_are_independent_of_batch_size(weights, pool3):
    s = shift(1, weights, pool3, cache=False)
    x = crops(14, 16, 16)
    keys = [f"k{i}" for i in range(14)]
    outs = [torch.cat([s(x[i:i + b], keys[i:i + b]) for i in range(0, 14, b)]) for b in (1, 7, 14)]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2])
    order = torch.randperm(14, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s(x[order], [keys[i] for i in order]), outs[0][order])


def test_style_features_are_computed_once_per_style_and_size(weights, pool3):
    s = shift(1, weights, pool3, cache=False)
    keys = [f"img{i}" for i in range(12)]
    used = set(s.choose_styles(keys))
    s(crops(12, 16, 16), keys)
    assert s.style_encodings == len(used) == 3
    s(crops(12, 16, 16, seed=2), keys)
    assert s.style_encodings == 3  # the same sizes: nothing encoded again
    s(crops(12, 24, 16), keys)
    assert s.style_encodings == 6  # another content size: each style resized and encoded for it


def test_pool_fingerprint_and_record(pool3, tmp_path):
    pool = StylePool.scan(pool3)
    assert pool.names == ("la_muse.jpg", "sketch.png", "trial.jpg")
    assert pool.sha256 == tuple(sha(pool3 / n) for n in pool.names)
    lines = "".join(f"{sha(pool3 / n)}  {n}\n" for n in pool.names)  # sha256sum's format, sorted by name
    assert pool.fingerprint == hashlib.sha256(lines.encode()).hexdigest()
    fingerprints = {pool.fingerprint}
    shutil.copy(STYLES / "goeritz.jpg", pool3 / "goeritz.jpg")  # added
    fingerprints.add(StylePool.scan(pool3).fingerprint)
    (pool3 / "goeritz.jpg").rename(pool3 / "goeritz2.jpg")  # renamed
    fingerprints.add(StylePool.scan(pool3).fingerprint)
    data = bytearray((pool3 / "sketch.png").read_bytes())
    data[-20] ^= 1  # one changed byte (still an image header)
    (pool3 / "sketch.png").write_bytes(bytes(data))
    fingerprints.add(StylePool.scan(pool3).fingerprint)
    (pool3 / "goeritz2.jpg").unlink()  # removed again, one file still changed
    fingerprints.add(StylePool.scan(pool3).fingerprint)
    assert len(fingerprints) == 5
    (pool3 / "notes.txt").write_text("not a style")
    (pool3 / "sub").mkdir()
    record = StylePool.scan(pool3).record()
    assert record["n"] == 3 and record["ignored"] == ["notes.txt", "sub/"]
    assert [name for name, _ in record["files"]] == list(pool.names)


# --- the cache ----------------------------------------------------------------------------------------------


def test_cached_equals_fresh_and_second_run_does_no_decoder_work(weights, pool3, tmp_path, monkeypatch):
    counter = CountDecoder(monkeypatch)
    x, keys = crops(3, 24, 32), ["a/1.JPEG", "a/2.JPEG", "b/3.JPEG"]
    first = shift(1, weights, pool3, cache_dir=tmp_path / "cache")
    stored = first.apply_batch(x, keys)
    assert first.decoded == 3 and counter.images == 3
    fresh = shift(1, weights, pool3, cache=False)(x, keys)
    again = shift(1, weights, pool3, cache_dir=tmp_path / "cache")  # a new process, the same cache
    cached = again.apply_batch(x, keys)
    assert again.decoded == 0 and again.cache_hits == 3 and counter.images == 3 + 3  # 3 for `fresh`
    assert again.style_encodings == 0  # a full hit encodes no style either
    assert torch.equal(cached, fresh) and torch.equal(stored, fresh)
    entries = sorted((tmp_path / "cache" / "style").rglob("*.png"))
    assert len(entries) == 3 and all(e.parent.parent.name == "24x32" for e in entries)
    styles = first.choose_styles(keys)
    key = hashlib.sha256(f"{content_key((x[1] * 255).round().to(torch.uint8).numpy())}:"
                         f"{first.pool.sha256[styles[1]]}".encode()).hexdigest()
    entry = next(e for e in entries if e.stem == key)  # lossless: the PNG holds exactly the output bytes
    expected = (fresh[1] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(Image.open(entry)), expected)
    namespace = entries[0].parents[2]
    params = first.params()
    assert namespace.name == f"adain1-{params['encoder_sha256'][:8]}{params['decoder_sha256'][:8]}-crop-v1"
    meta = json.loads((namespace / "meta.json").read_text())
    assert meta["encoder_sha256"] == sha(weights / "vgg_normalised.pth") and meta["alpha"] == 1.0


def key_choosing(s: AdaINStyle, painting: str, skip: int = 0) -> str:
    """An image key whose style under ``s`` is ``painting`` (the ``skip``-th such key)."""
    keys = (f"img{i}" for i in range(1000))
    return [k for k in keys if s.pool.names[s.choose_styles([k])[0]] == painting][skip]


def test_cache_is_keyed_by_style_alpha_and_weights(weights, pool3, tmp_path):
    x = crops(1, 16, 16)
    base = shift(1, weights, pool3, cache_dir=tmp_path)
    out = base.apply_batch(x, [key_choosing(base, "la_muse.jpg")])
    other_style = shift(1, weights, pool3, cache_dir=tmp_path)
    assert not torch.equal(other_style.apply_batch(x, [key_choosing(base, "trial.jpg")]), out)
    assert other_style.decoded == 1  # the same crop with another painting: another entry
    same_style = shift(1, weights, pool3, cache_dir=tmp_path)
    assert torch.equal(same_style.apply_batch(x, [key_choosing(base, "la_muse.jpg", skip=1)]), out)
    assert same_style.decoded == 0  # another path, the same crop and painting: the same entry
    half = shift(0.5, weights, pool3, cache_dir=tmp_path)
    assert not torch.equal(half.apply_batch(x, [key_choosing(base, "la_muse.jpg")]), out) and half.decoded == 1
    other_weights = shift(1, save_weights(tmp_path / "w2", seed=1), pool3, cache_dir=tmp_path)
    assert not torch.equal(other_weights.apply_batch(x, [key_choosing(base, "la_muse.jpg")]), out)
    assert other_weights.decoded == 1
    # another pool holding the same painting: the entry is the painting's, whatever else the pool holds
    bigger = tmp_path / "bigger"
    shutil.copytree(pool3, bigger)
    shutil.copy(STYLES / "goeritz.jpg", bigger / "goeritz.jpg")
    shared = shift(1, weights, bigger, cache_dir=tmp_path)
    assert torch.equal(shared.apply_batch(x, [key_choosing(shared, "la_muse.jpg")]), out) and shared.decoded == 0


# --- bad input ----------------------------------------------------------------------------------------------


def test_bad_style_dirs_are_refused(tmp_path, weights):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TransformError, match="Expected style images .* but it is empty"):
        StylePool.scan(empty)
    (empty / "README.txt").write_text("paintings go here")
    with pytest.raises(TransformError, match="but only README.txt"):
        StylePool.scan(empty)
    with pytest.raises(TransformError, match="no such folder"):
        shift(1, weights, tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(STYLES, broken)
    (broken / "junk.jpg").write_bytes(b"not an image at all")
    (broken / "empty.png").write_bytes(b"")
    with pytest.raises(TransformError) as err:
        StylePool.scan(broken)
    message = str(err.value)
    assert "2 of the 22 style images" in message and "junk.jpg" in message and "empty.png" in message
    with pytest.raises(TransformError, match="needs a pool of style images: pass --style-dir DIR"):
        create_transform("adain1", weights=weights).prepare(progress=False)


def test_a_style_image_changed_during_the_run_is_refused(weights, pool3):
    s = shift(1, weights, pool3, cache=False)
    keys = ["a"]
    name = s.pool.names[s.choose_styles(keys)[0]]
    shutil.copy(STYLES / "goeritz.jpg", pool3 / name)
    with pytest.raises(TransformError, match=f"cannot use style image .*{name}.*changed since the run started"):
        s(crops(1, 16, 16), keys)


@pytest.mark.parametrize("name", ["adain1.5", "adain2"])
def test_alpha_outside_0_1_is_refused(name):
    with pytest.raises(TransformError, match=r"alpha .* in \[0, 1\]"):
        create_transform(name)
    for alpha in (-0.1, float("nan"), True):
        with pytest.raises(TransformError, match=r"in \[0, 1\]"):
            AdaINStyle(alpha)


def test_missing_weights_offline_name_both_files_and_urls(pool3, tmp_path):
    save_weights(tmp_path / "w")
    with pytest.raises(TransformError) as err:
        create_transform("adain1", style_dir=pool3).prepare(progress=False)
    message = str(err.value)
    for part in ("vgg_normalised.pth", "decoder.pth", "http://127.0.0.1:9/vgg_normalised.pth",
                 "http://127.0.0.1:9/decoder.pth", "transform_weights={'adain': DIR}",
                 "transform_weights={'adain': 'ENCODER+DECODER'}", "checkpoints"):
        assert part in message
    with command_line(), pytest.raises(TransformError) as err:  # the same message, as robust-eval words it
        create_transform("adain1", style_dir=pool3).prepare(progress=False)
    assert "pass --transform-weights adain=DIR (a folder holding both) or --transform-weights adain=ENCODER+DECODER" \
        in str(err.value)
    with pytest.raises(TransformError, match="the decoder file .*missing.pth does not exist"):
        shift(1, f"{tmp_path / 'w' / 'vgg_normalised.pth'}+{tmp_path / 'missing.pth'}", pool3)


def test_weights_syntax(weights, pool3, tmp_path):
    encoder, decoder = weights / "vgg_normalised.pth", weights / "decoder.pth"
    assert weights_files(weights) == (str(encoder), str(decoder))
    assert weights_files(f"{encoder}+{decoder}") == (str(encoder), str(decoder))
    assert weights_files((encoder, decoder)) == (str(encoder), str(decoder))
    for bad, why in [("a+b+c", "3 '\\+'-separated parts"), (str(tmp_path / "nothing"), "no such folder"),
                     ("a+", "2 '\\+'-separated parts")]:
        with pytest.raises(TransformError, match=f"folder holding vgg_normalised.pth and decoder.pth.*{why}"):
            weights_files(bad)
    with pytest.raises(TransformError, match="pair"):
        weights_files([encoder])
    a, b = shift(1, weights, pool3), shift(1, f"{encoder}+{decoder}", pool3)
    assert a.definition()["weights"] == b.definition()["weights"]
    record = a.definition()["weights"]["decoder"]
    assert record == {"official_url": "http://127.0.0.1:9/decoder.pth", "location": str(decoder.resolve()),
                      "source": "path", "sha256": sha(decoder)}


def test_download_then_hub_cache(local_server, weights, pool3, monkeypatch):
    server, root = local_server
    for name in ("vgg_normalised.pth", "decoder.pth"):
        (root / name).write_bytes((weights / name).read_bytes())
    monkeypatch.setattr(adain_module, "URL_TEMPLATE", server.url("{file}"))
    first = create_transform("adain1", style_dir=pool3)
    first.prepare(progress=False)
    assert server.requests == 2 and {r["source"] for r in first.definition()["weights"].values()} == {"download"}
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    assert (hub / "decoder.pth").read_bytes() == (weights / "decoder.pth").read_bytes()
    again = create_transform("adain0.5", style_dir=pool3)
    again.prepare(progress=False)
    assert server.requests == 2 and {r["source"] for r in again.definition()["weights"].values()} == {"hub cache"}
    by_url = create_transform("adain1", style_dir=pool3, weights=f"{server.url('vgg_normalised.pth')}+"
                                                                 f"{server.url('decoder.pth')}")
    by_url.prepare(progress=False)
    assert by_url.params()["decoder_sha256"] == sha(weights / "decoder.pth")


# --- the record, the contract, the runner -------------------------------------------------------------------


def test_definition_records_weights_pool_and_rule(weights, pool3):
    s = shift(0.5, weights, pool3).seeded(7)
    record = json.loads(json.dumps(s.definition()))
    assert record["name"] == "adain0.5" and record["label"] == "AdaIN α=0.5" and record["stage"] == "crop"
    assert record["severity"] == {"family": "adain{alpha}", "param": "alpha", "value": 0.5, "identity": None}
    params = record["params"]
    assert params["alpha"] == 0.5 and params["encoder_sha256"] == sha(weights / "vgg_normalised.pth")
    assert params["style_pool"] == {"n": 3, "fingerprint": StylePool.scan(pool3).fingerprint}
    assert record["stochastic"]["seed"] == 7 and "sha256" in record["stochastic"]["per_image"]
    assert record["style_pool"]["dir"] == str(pool3.resolve()) and len(record["style_pool"]["files"]) == 3
    assert record["weights"]["encoder"]["sha256"] == sha(weights / "vgg_normalised.pth")


def test_keeps_the_shift_contract(weights, monkeypatch):
    monkeypatch.setattr(adain_module, "_BATCH", {"cpu": 3})  # network batches that do not divide the batch
    check_contract("adain{alpha}", style_weights={"adain": str(weights)})  # 12x10 crops: padded to 16x16, cropped back


def test_family_weights_key_serves_every_member(weights, tmp_path):
    prepare = functools.partial(prepare_transforms, style_dir=STYLES, progress=False)
    shifts = prepare(["adain1", "adain0.5"], weights={"adain": weights})
    assert all(s.params()["decoder_sha256"] == sha(weights / "decoder.pth") for s in shifts.values())
    other = save_weights(tmp_path / "other", seed=1)
    shifts = prepare(["adain1", "adain0.5"], weights={"adain": weights, "adain0.5": other})
    assert shifts["adain0.5"].params()["decoder_sha256"] == sha(other / "decoder.pth")  # the member's own entry wins
    assert shifts["adain1"].params()["decoder_sha256"] == sha(weights / "decoder.pth")
    with pytest.raises(TransformError, match="Unknown transform 'adian'"):
        prepare_transforms(["clean"], weights={"adian": weights})
    with pytest.raises(TransformError, match="'rgb\\+' takes none"):
        prepare_transforms(["clean"], weights={"rgb+": weights})


def test_evaluate_end_to_end_and_again_from_the_cache(weights, sample_val, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTBENCH_IBN_CACHE", str(tmp_path / "cache"))
    data = few_images(sample_val, 3, tmp_path / "val")
    counter = CountDecoder(monkeypatch)
    config = DataConfig(resize=72, crop=64)  # small crops keep this fast; resnet18 pools adaptively
    run = functools.partial(evaluate, "resnet18", data, ["adain1", "adain0.5"], weights="random", data_config=config,
                            batch_size=2, workers=0, progress=False, transform_weights={"adain": weights},
                            style_dir=STYLES)
    first = run()
    assert counter.images == 6 and first.predictions["adain1"].shape == (3, 5)
    second = run()
    assert counter.images == 6  # every stylized crop came from the cache
    for name in ("adain1", "adain0.5"):
        assert np.array_equal(first.predictions[name], second.predictions[name])
    definition = {d["name"]: d["shift"] for d in second.domains}["adain1"]
    assert definition["params"]["style_pool"]["fingerprint"] == StylePool.scan(STYLES).fingerprint
    assert definition["weights"]["decoder"]["sha256"] == sha(weights / "decoder.pth")
    assert first.protocol["fingerprint"] == second.protocol["fingerprint"]
    assert len(list((tmp_path / "cache" / "style").rglob("64x64/*/*.png"))) == 6
    # what was stylized is each image's own crop (the model's geometry) with its chosen painting
    pool = StylePool.scan(STYLES)
    dataset = ImageNetVal(data, config)  # the model's geometry
    for i, (rel, _) in enumerate(dataset.samples):
        crop = dataset[i][0]
        entry = hashlib.sha256(f"{content_key(crop.numpy())}:{pool.sha256[pool.choose(rel, 0)]}".encode()).hexdigest()
        assert len(list((tmp_path / "cache" / "style").glob(f"adain1-*/64x64/{entry[:2]}/{entry}.png"))) == 1


def test_doctests():
    import doctest

    result = doctest.testmod(adain_module)
    assert result.attempted > 0 and result.failed == 0


# --- the command lines: --style-dir, the issue's run, bad input, robust-cache ---------------------------------


def cli(capsys, main, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # ResNet-50 and AdaIN at 224x224 on the CPU
def test_the_issue_command_runs_and_prints_the_table(weights, sample_val, tmp_path, capsys, monkeypatch):
    """The issue's done-when command, on 2 images: ``robust-eval --model resnet50_ibn_b --weights random --transforms
    adain1,adain0.5 --style-dir ../shared/data/styles --transform-weights adain=DIR``."""
    from robustbench_ibn.cli.eval import main as robust_eval

    counter = CountDecoder(monkeypatch)
    record = tmp_path / "r.json"
    command = ["--model", "resnet50_ibn_b", "--weights", "random", "--transforms", "adain1,adain0.5",
               "--style-dir", STYLES, "--data", sample_val, "--limit", "2", "--workers", "0", "--no-progress"]
    code, out, err = cli(capsys, robust_eval, *command, "--transform-weights", f"adain={weights}", "--output", record)
    assert code == 0, err
    lines = out.splitlines()
    assert [next(line for line in lines if label in line) for label in ("origin", "AdaIN α=1", "AdaIN α=0.5")]
    assert "RANDOM INIT" in out and counter.images == 4  # 2 images x 2 alphas, at 224x224
    domains = {d["name"]: d for d in json.loads(record.read_text())["domains"]}
    for name, alpha in (("adain1", 1.0), ("adain0.5", 0.5)):
        definition = domains[name]["shift"]
        assert definition["params"]["alpha"] == alpha and definition["style_pool"]["dir"] == str(STYLES.resolve())
        assert definition["params"]["style_pool"]["fingerprint"] == StylePool.scan(STYLES).fingerprint
        assert definition["weights"]["decoder"]["sha256"] == sha(weights / "decoder.pth")
    # The same run with the two files named: the same shifts (same weights hashes), so every crop is a cache hit.
    files = f"adain={weights / 'vgg_normalised.pth'}+{weights / 'decoder.pth'}"
    code, again, err = cli(capsys, robust_eval, *command, "--transform-weights", files)
    assert code == 0, err
    assert counter.images == 4 and [line for line in again.splitlines() if "AdaIN" in line] == [
        line for line in lines if "AdaIN" in line]


@pytest.fixture(scope="module")
def filled_cache(weights, tmp_path_factory) -> Path:
    """A cache root holding two stylized crops, from a run before the failing one."""
    root = tmp_path_factory.mktemp("filled_cache")
    shift(1, weights, STYLES, cache_dir=root).apply_batch(crops(2, 16, 16), ["a", "b"])
    return root


def bad_style_dirs(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    shutil.copy(STYLES / "la_muse.jpg", unreadable / "la_muse.jpg")
    (unreadable / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return {"empty": empty, "unreadable": unreadable}


@pytest.mark.parametrize("case,expected", [
    ("empty style dir", "in {empty}, but it is empty"),
    ("unreadable style image", "1 of the 2 style images in {unreadable} cannot be read as images: broken.jpg"),
    ("weights of the wrong layout", "does not fit the AdaIN decoder"),
    ("files given the other way round", "were the two files given the other way round?"),
    ("alpha outside [0, 1]", "Expected alpha of adain{{alpha}} (the content/style feature blend) in [0, 1], but got "
                             "1.5"),
    ("missing weights offline", "the AdaIN shifts need two files, vgg_normalised.pth (http://127.0.0.1:9/"
                                "vgg_normalised.pth) and decoder.pth (http://127.0.0.1:9/decoder.pth)"),
    ("missing weights file", "the decoder file {weights}/nothing.pth does not exist"),
    ("no style dir", "adain1 needs a pool of style images: pass --style-dir DIR"),
    ("style dir without a style shift", "Expected --style-dir only with a shift that uses style images "
                                        "(adain{{alpha}}), but none of clean, rgb+50 does"),
    ("misspelt family", "Unknown transform 'adian'. Did you mean: adain{{alpha}}?"),
])
def test_bad_input_is_a_clear_error_before_any_work(case, expected, weights, filled_cache, sample_val, tmp_path,
                                                    capsys, monkeypatch):
    from robustbench_ibn import runner
    from robustbench_ibn.cli.eval import main as robust_eval
    from robustbench_ibn.stylecache import verify_cache

    def no_work(*args, **kwargs):
        raise AssertionError("a model was built before the bad input was reported")

    monkeypatch.setattr(runner, "prepare_model", no_work)
    monkeypatch.setenv("ROBUSTBENCH_IBN_CACHE", str(filled_cache))
    dirs = bad_style_dirs(tmp_path)
    wrong = tmp_path / "wrong"
    save_weights(wrong)
    torch.save(official_states()[0], wrong / "decoder.pth")  # the encoder's state under the decoder's name
    flags = {"style": ["--style-dir", STYLES], "weights": ["--transform-weights", f"adain={weights}"],
             "transforms": ["--transforms", "adain1"]}
    changes = {
        "empty style dir": {"style": ["--style-dir", dirs["empty"]]},
        "unreadable style image": {"style": ["--style-dir", dirs["unreadable"]]},
        "weights of the wrong layout": {"weights": ["--transform-weights", f"adain={wrong}"]},
        "files given the other way round": {"weights": [
            "--transform-weights", f"adain={weights / 'decoder.pth'}+{weights / 'vgg_normalised.pth'}"]},
        "alpha outside [0, 1]": {"transforms": ["--transforms", "adain1.5"]},
        "missing weights offline": {"weights": []},
        "missing weights file": {"weights": [
            "--transform-weights", f"adain={weights / 'vgg_normalised.pth'}+{weights / 'nothing.pth'}"]},
        "no style dir": {"style": []},
        "style dir without a style shift": {"transforms": ["--transforms", "rgb+50"]},
        "misspelt family": {"transforms": ["--transforms", "adian"]},
    }[case]
    argv = [a for key in ("style", "weights", "transforms") for a in changes.get(key, flags[key])]
    code, out, err = cli(capsys, robust_eval, "--model", "resnet18", "--weights", "random", "--data", sample_val,
                         "--workers", "0", "--no-progress", *argv)
    assert code == 2 and out == ""
    assert expected.format(weights=weights, **dirs) in err, err
    assert err.startswith("robust-eval: error: ") and "Traceback" not in err
    assert verify_cache(filled_cache) == (2, [])  # what earlier runs computed is still there, intact


def test_divergence_takes_a_style_dir(weights, sample_val, tmp_path, capsys):
    from robustbench_ibn.cli.divergence import main as robust_divergence

    data = few_images(sample_val, 2, tmp_path / "val")
    common = ["--model", "resnet18", "--weights", "random", "--data", data, "--workers", "0", "--no-progress",
              "--transform-weights", f"adain={weights}", "--style-dir", STYLES]
    code, out, err = cli(capsys, robust_divergence, *common, "--domains", "clean,adain1", "--format", "json")
    assert code == 0, err
    record = json.loads(out)
    assert [d["name"] for d in record["domains"]] == ["clean", "adain1"]
    assert record["domains"][1]["shift"]["style_pool"]["n"] == len(StylePool.scan(STYLES))
    code, out, err = cli(capsys, robust_divergence, *common, "--domains", "clean,rgb+50")
    assert code == 2 and "Expected --style-dir only with a shift that uses style images" in err
    common.remove(data)
    common.remove("--data")
    code, out, err = cli(capsys, robust_divergence, *common, "--domains-dirs", f"{data},{data}")
    assert code == 2 and "Expected style_dir (--style-dir) only with domains='A,B'" in err


def test_robust_cache_info_shows_the_adain_weights(weights, pool3, tmp_path, capsys):
    from robustbench_ibn.cli.cache import main as robust_cache

    shift(0.5, weights, pool3, cache_dir=tmp_path).apply_batch(crops(2, 16, 16), ["a", "b"])
    code, out, _ = cli(capsys, robust_cache, "--dir", tmp_path, "info")
    assert code == 0 and "adain0.5-" in out and "2 crops" in out and "16x16: 2" in out
    assert f"encoder sha256 {sha(weights / 'vgg_normalised.pth')}, decoder sha256 {sha(weights / 'decoder.pth')}" in out
    assert "None" not in out and "variant crop-v1: AdaIN style transfer" in out

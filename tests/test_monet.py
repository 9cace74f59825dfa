"""The CycleGAN style shifts, crop and official variants (Table 1's Monet row): official keys, the two protocols
step by step, cache, weights discovery, CLI.

Offline and fast: the generator checkpoints are random weights in the official key layout (plus the legacy
InstanceNorm running-stat entries the published files carry), written to temp dirs; the generator runs on
tiny crops. Downloads come from an http.server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn

from conftest import few_images
from robustbench_ibn import DataConfig, evaluate
from robustbench_ibn import stylecache
from robustbench_ibn.cli.cache import main as robust_cache
from robustbench_ibn.cli.eval import main as robust_eval
from robustbench_ibn.data import ImageNetVal, load_rgb
from robustbench_ibn.results import PROTOCOL_CHANGES
from robustbench_ibn.transforms import TABLE1, TransformError, create_transform, prepare_transforms
from robustbench_ibn.transforms import cyclegan
from robustbench_ibn.transforms.cyclegan import (
    CycleGANStyle,
    OfficialCycleGANStyle,
    ResnetGenerator,
    load_generator,
    stylize,
    stylize_folder,
    stylize_official,
)

# The official test configuration's 48 keys (reference/cyclegan.md, section 3), written out independently.
OFFICIAL_KEYS = (
    [f"model.{i}.{p}" for i in (1, 4, 7) for p in ("weight", "bias")]
    + [f"model.{b}.conv_block.{c}.{p}" for b in range(10, 19) for c in (1, 5) for p in ("weight", "bias")]
    + [f"model.{i}.{p}" for i in (19, 22, 26) for p in ("weight", "bias")]
)
IN_LAYERS = ["model.2", "model.5", "model.8", "model.20", "model.23"] + [
    f"model.{b}.conv_block.{c}" for b in range(10, 19) for c in (2, 6)
]


def official_state(seed: int = 0, legacy: bool = True) -> dict[str, torch.Tensor]:
    """Random generator weights in the official layout; ``legacy`` adds the 23 x 3 stray IN entries (117 keys)."""
    torch.manual_seed(seed)
    state = dict(ResnetGenerator().state_dict())
    if legacy:
        for layer in IN_LAYERS:
            # the conv before the norm has its channel count (inside a residual block: 256)
            channels = 256 if "conv_block" in layer else state[f"model.{int(layer.split('.')[1]) - 1}.bias"].shape[0]
            state[f"{layer}.running_mean"] = torch.randn(channels)
            state[f"{layer}.running_var"] = torch.rand(channels) + 0.5
            state[f"{layer}.num_batches_tracked"] = torch.tensor(100)
    return state


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "style_monet.pth"
    torch.save(official_state(), path)
    return path


@pytest.fixture(scope="module")
def generator(ckpt) -> ResnetGenerator:
    return load_generator(ckpt)


@pytest.fixture
def crops() -> torch.Tensor:
    """Two 8-bit 36x44 crops as the runner hands them over (uint8 / 255)."""
    return torch.randint(0, 256, (2, 3, 36, 44), generator=torch.Generator().manual_seed(1)).float().div(255)


def monet(ckpt: Path, cache_dir: Path, **kwargs) -> CycleGANStyle:
    shift = create_transform("monet", weights=ckpt, cache_dir=cache_dir, **kwargs)
    shift.prepare(progress=False)
    return shift


class CountCalls:
    """Counts generator forward calls (monkeypatched onto the class, so every instance is counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, replacement=None) -> None:
        self.calls = self.images = 0
        original = ResnetGenerator.forward

        def forward(module, x):
            self.calls += 1
            self.images += len(x)
            return replacement(x) if replacement is not None else original(module, x)

        monkeypatch.setattr(ResnetGenerator, "forward", forward)


# --- architecture and loading ---------------------------------------------------------------------------


def test_generator_has_the_official_keys_shapes_and_size():
    state = ResnetGenerator().state_dict()
    assert sorted(state) == sorted(OFFICIAL_KEYS) and len(state) == 48
    assert sum(v.numel() for v in state.values()) == 11_378_179
    assert state["model.1.weight"].shape == (64, 3, 7, 7)
    assert state["model.19.weight"].shape == (256, 128, 3, 3)  # ConvTranspose2d: (in, out, kH, kW)
    assert state["model.26.weight"].shape == (3, 64, 7, 7)


def test_official_layout_file_loads_strictly_without_the_legacy_stats(ckpt, generator):
    assert len(torch.load(ckpt, weights_only=True)) == 117
    saved = official_state(legacy=False)
    loaded = generator.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    norms = [m for m in generator.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 23 and all(m.running_mean is None and not m.affine for m in norms)
    # The stats are dropped, not used: the output equals a 48-key file's, and train/eval modes agree.
    x = torch.rand(1, 3, 20, 24) * 2 - 1
    with torch.no_grad():
        ref = generator(x)
        assert torch.equal(generator.train()(x), ref)
    generator.eval()
    assert ref.shape == x.shape and ref.abs().max() <= 1


def test_wrapped_and_prefixed_checkpoints_load(tmp_path, generator):
    state = {"state_dict": {f"module.{k}": v for k, v in official_state(legacy=False).items()}}
    torch.save(state, tmp_path / "g.pth")
    assert torch.equal(load_generator(tmp_path / "g.pth").model[26].bias, generator.model[26].bias)


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda s: s.update({"model.27.weight": torch.zeros(1)}), "unexpected: model.27.weight"),
        (lambda s: s.pop("model.10.conv_block.5.weight"), "missing: model.10.conv_block.5.weight"),
        (lambda s: s.update({"model.26.bias": torch.zeros(4)}), "model.26.bias expected [3] got [4]"),
        # a generator trained with dropout: conv_block.5 -> conv_block.6
        (lambda s: s.update({"model.10.conv_block.6.weight": s.pop("model.10.conv_block.5.weight")}), "dropout"),
    ],
)
def test_mismatched_file_is_refused_with_the_keys(tmp_path, edit, expected):
    state = official_state(legacy=False)
    edit(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(TransformError, match="does not fit the CycleGAN generator") as err:
        load_generator(tmp_path / "bad.pth")
    assert expected in str(err.value) and str(tmp_path / "bad.pth") in str(err.value)


def test_unreadable_file_is_refused(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TransformError, match="cannot read .*junk.pth"):
        load_generator(tmp_path / "junk.pth")


def test_all_four_styles_are_registered_in_both_variants_with_their_official_files():
    for name, label in [("monet", "Monet"), ("cezanne", "Cézanne"), ("ukiyoe", "Ukiyo-e"), ("vangogh", "Van Gogh")]:
        crop, official = create_transform(name), create_transform(f"{name}-official")  # built without weights
        assert (crop.label, crop.stage, type(crop)) == (f"{label} (crop)", "crop", CycleGANStyle)
        assert (official.label, official.stage, type(official)) == (label, "image", OfficialCycleGANStyle)
        for shift in (crop, official):
            assert shift.url == f"http://127.0.0.1:9/style_{name}.pth"  # the tests' closed port (conftest)
        assert cyclegan.STYLES[name].file == f"style_{name}.pth"
        assert official.params()["output"].endswith("(floor)") and "squashed to 256x256" in official.params()["input"]
    assert TABLE1 == ("rgb+50", "r+50", "std1.5", "monet-official")
    assert "Table 1's Monet row" in create_transform("monet-official").describe()
    assert "Table 1" not in create_transform("vangogh-official").describe() + create_transform("monet").describe()


# --- the protocol: [-1, 1] in, 8-bit rounded out, any size -------------------------------------------------


def test_output_is_the_generator_on_the_crop_rounded_to_8_bits(ckpt, tmp_path, generator, crops):
    shift = monet(ckpt, tmp_path)
    out = shift(crops)
    assert out.shape == crops.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    with torch.no_grad():
        y = generator(crops * 2 - 1)
    expected = ((y + 1) / 2 * 255).round() / 255
    assert torch.equal(out, expected)
    assert torch.equal(out * 255, (out * 255).round())  # on the 8-bit grid
    assert (out - (y + 1) / 2).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("size", [(33, 38), (37, 45), (5, 7), (30, 41)])
def test_awkward_sizes_keep_their_size(generator, size):
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = generator(x * 2 - 1)
    assert raw.shape[-2:] == tuple(-(-s // 4) * 4 for s in size)  # why we pad: the raw generator grows them
    out = stylize(generator, x)
    assert out.shape == x.shape and out.dtype == torch.uint8
    # By construction: centred reflection padding to a multiple of 4, generator, crop back.
    h, w = size
    ph, pw = max(8, -(-h // 4) * 4) - h, max(8, -(-w // 4) * 4) - w
    padded = torch.nn.functional.pad(x * 2 - 1, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")
    with torch.no_grad():
        y = generator(padded)[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]
    assert torch.equal(out, ((y + 1) / 2 * 255).round().to(torch.uint8))


def test_multiples_of_4_are_not_padded(generator):
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(stylize(generator, x), ((generator(x * 2 - 1) + 1) / 2 * 255).round().to(torch.uint8))


def test_too_small_images_are_refused(generator):
    with pytest.raises(TransformError, match="at least 5x5"):
        stylize(generator, torch.rand(1, 3, 4, 30))


def test_generator_runs_fp32_under_autocast(ckpt, tmp_path, crops):
    shift = monet(ckpt, tmp_path)
    reference = shift(crops)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(shift(crops), reference)


# --- the cache --------------------------------------------------------------------------------------------


def test_cached_equals_fresh_bit_for_bit(ckpt, tmp_path, crops, monkeypatch):
    counter = CountCalls(monkeypatch)
    first = monet(ckpt, tmp_path / "cache")
    stored = first.apply_batch(crops, ["a/1.JPEG", "a/2.JPEG"])
    assert first.generated == 2 and counter.calls == 2  # CPU: generator batch 1
    fresh = monet(ckpt, tmp_path / "other").forward(crops)  # never touches a cache
    again = monet(ckpt, tmp_path / "cache")  # a new process, same cache
    cached = again.apply_batch(crops, ["elsewhere/x.png", "y.png"])  # keys are content, not paths
    assert again.generated == 0 and again.cache_hits == 2 and counter.calls == 2 + 2  # 2 for `fresh`
    assert torch.equal(cached, fresh) and torch.equal(stored, fresh)
    entries = sorted((tmp_path / "cache" / "style").rglob("*.png"))
    assert len(entries) == 2 and all(e.parent.parent.name == "36x44" for e in entries)
    key = stylecache.content_key((crops[1] * 255).round().to(torch.uint8).numpy())
    entry = next(e for e in entries if e.stem == key)  # lossless: the PNG holds exactly the output bytes
    expected = (fresh[1] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(Image.open(entry)), expected)
    namespace = entries[0].parents[2].name
    assert namespace.startswith(f"monet-{first.params()['generator_sha256'][:16]}-")


def test_cache_is_keyed_by_generator(ckpt, tmp_path, crops):
    other_ckpt = tmp_path / "other.pth"
    torch.save(official_state(seed=1), other_ckpt)
    a = monet(ckpt, tmp_path / "cache")
    b = monet(other_ckpt, tmp_path / "cache")
    out_a, out_b = a.apply_batch(crops, ["1", "2"]), b.apply_batch(crops, ["1", "2"])
    assert b.generated == 2 and not torch.equal(out_a, out_b)
    assert a.params()["generator_sha256"] != b.params()["generator_sha256"]
    assert len(stylecache.cache_info(tmp_path / "cache")) == 2


def test_interrupted_run_continues_and_bad_entries_are_regenerated(ckpt, tmp_path, crops):
    shift = monet(ckpt, tmp_path)
    shift.apply_batch(crops[:1], ["1"])  # "killed" after the first image
    leftover = next((tmp_path / "style").rglob("*.png")).with_name(".x.png.123.tmp")
    leftover.write_bytes(b"half a file")  # a writer killed mid-write leaves only a temp file
    out = shift.apply_batch(crops, ["1", "2"])
    assert shift.generated == 2 and shift.cache_hits == 1
    entry = sorted((tmp_path / "style").rglob("[!.]*.png"))[0]
    entry.write_bytes(entry.read_bytes()[:100])  # truncated entry: ignored with a warning, regenerated
    again = monet(ckpt, tmp_path)
    with pytest.warns(UserWarning, match="regenerated"):
        assert torch.equal(again.apply_batch(crops, ["1", "2"]), out)
    assert again.generated == 1


def test_an_oversized_bomb_entry_is_regenerated_not_decoded(ckpt, tmp_path, crops):
    out = monet(ckpt, tmp_path).apply_batch(crops, ["1", "2"])
    entry = sorted((tmp_path / "style").rglob("[!.]*.png"))[0]
    image = Image.new("RGB", (8, 8))
    image.save(entry)  # a valid PNG, then its header patched to declare 30000x30000 pixels (PIL's bomb limit)
    raw = bytearray(entry.read_bytes())
    raw[16:24] = (30000).to_bytes(4, "big") * 2
    raw[29:33] = zlib.crc32(bytes(raw[12:29])).to_bytes(4, "big")
    entry.write_bytes(bytes(raw))
    again = monet(ckpt, tmp_path)
    with pytest.warns(UserWarning, match="regenerated"):  # once a DecompressionBombError traceback
        assert torch.equal(again.apply_batch(crops, ["1", "2"]), out)
    assert again.generated == 1 and stylecache.verify_cache(tmp_path) == (2, [])


def test_inputs_off_the_8_bit_grid_are_keyed_exactly(ckpt, tmp_path):
    x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(3))
    shift = monet(ckpt, tmp_path)
    first = shift.apply_batch(x, ["a", "b"])
    nudged = x.clone()
    nudged[0, 0, 0, 0] += 1e-4  # same 8-bit rounding, different input: must not share the entry
    shift.apply_batch(nudged, ["a", "b"])
    assert shift.generated == 3 and torch.equal(first, shift.forward(x))


def test_cache_can_be_disabled(ckpt, tmp_path, crops):
    shift = monet(ckpt, tmp_path, cache=False)
    shift.apply_batch(crops, ["1", "2"])
    shift.apply_batch(crops, ["1", "2"])
    assert shift.generated == 4 and not (tmp_path / "style").exists()


def test_progress_bar_with_eta_on_stderr(ckpt, tmp_path, crops, capsys):
    shift = create_transform("monet", weights=ckpt, cache_dir=tmp_path)
    shift.prepare(progress=True)
    shift.apply_batch(crops, ["1", "2"])
    err = capsys.readouterr().err
    assert "Monet (crop): generating" in err and "1/2" in err and "2/2" in err
    assert re.search(r"1/2 \[\d\d:\d\d<\d\d:\d\d", err)  # elapsed<remaining: an ETA once an image is done


def test_generator_batch_size_per_device():
    assert cyclegan._generator_batch_size(torch.device("cpu")) == 1
    assert cyclegan._generator_batch_size(torch.device("cuda")) > 1


# --- weights discovery --------------------------------------------------------------------------------------


@pytest.fixture
def served(local_server, ckpt, monkeypatch):
    server, root = local_server
    (root / "style_monet.pth").write_bytes(ckpt.read_bytes())
    monkeypatch.setattr(cyclegan, "URL_TEMPLATE", f"http://127.0.0.1:{server.httpd.server_address[1]}/{{file}}")
    return server


def test_download_then_hub_cache(served, ckpt, tmp_path):
    shift = create_transform("monet", cache_dir=tmp_path)
    shift.prepare(progress=False)
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / "style_monet.pth"
    assert served.requests == 1 and hub_file.read_bytes() == ckpt.read_bytes()
    assert shift.definition()["weights"]["source"] == "download"
    again = create_transform("monet", cache_dir=tmp_path)
    again.prepare(progress=False)
    assert served.requests == 1 and again.definition()["weights"]["source"] == "hub cache"
    assert again.params()["generator_sha256"] == file_sha256(ckpt)


def test_local_file_wins_over_download(served, ckpt, tmp_path):
    shift = create_transform("monet", weights=str(ckpt), cache_dir=tmp_path)
    shift.prepare(progress=False)
    assert served.requests == 0 and shift.definition()["weights"]["location"] == str(ckpt.resolve())


def test_offline_without_weights_names_the_url_and_the_flag(tmp_path):
    with pytest.raises(TransformError) as err:
        create_transform("monet", cache_dir=tmp_path).prepare(progress=False)
    message = str(err.value)
    assert "http://127.0.0.1:9/style_monet.pth" in message and "transform_weights={'monet': " in message
    assert "checkpoints/style_monet.pth" in message  # where a copy would be picked up
    with pytest.raises(TransformError, match="no such file"):
        create_transform("monet", weights=tmp_path / "missing.pth").prepare(progress=False)


def test_all_stops_before_any_work_without_weights(sample_val, monkeypatch):
    from robustbench_ibn import runner

    def no_work(*args, **kwargs):
        raise AssertionError("a model was built or images were decoded before the weights check")

    # Listing the data folder comes first (a wrong --data is the cheaper mistake to name); decoding does not.
    monkeypatch.setattr(runner, "prepare_model", no_work)
    monkeypatch.setattr(ImageNetVal, "load", no_work)
    with pytest.raises(TransformError) as err:
        evaluate("resnet18_ibn_b", sample_val, "all", weights="random", progress=False)
    message = str(err.value)
    assert "style_monet.pth" in message and "transform_weights={'monet': " in message
    assert "transforms='rgb+50,r+50,std1.5'" in message


def test_transform_weights_are_checked(ckpt):
    with pytest.raises(TransformError, match="Did you mean: monet"):
        prepare_transforms(["clean"], weights={"monnet": ckpt})
    with pytest.raises(TransformError, match="'rgb\\+50' takes none"):
        prepare_transforms(["clean"], weights={"rgb+50": ckpt})


# --- the command lines ------------------------------------------------------------------------------------


def test_cli_all_with_and_without_weights(capsys, sample_val, ckpt, tmp_path, monkeypatch):
    data = few_images(sample_val, 2, tmp_path / "val")
    common = ["--model", "resnet18_ibn_b", "--weights", "random", "--data", str(data), "--workers", "0",
              "--no-progress", "--transforms", "all"]
    assert robust_eval(common) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--transform-weights monet=" in err and "style_monet.pth" in err
    # With weights: all four rows. The generator itself is replaced by a cheap stand-in to keep this fast
    # (its arithmetic is tested above); loading, hashing, caching and the record are the real ones.
    counter = CountCalls(monkeypatch, replacement=lambda x: torch.tanh(x * 0.5))
    record = tmp_path / "r.json"
    assert robust_eval([*common, "--transform-weights", f"monet={ckpt}", "--output", str(record)]) == 0
    out, _ = capsys.readouterr()
    assert all(label in out for label in ("origin", "RGB+50", "R+50", "std×1.5", "Monet")) and counter.images == 2
    assert "(crop)" not in out and "or on the decoded image (image stage)" in out
    saved = json.loads(record.read_text())
    monet_record = saved["domains"][-1]["shift"]
    assert monet_record["name"] == "monet-official" and monet_record["stage"] == "image"
    assert monet_record["weights"]["sha256"] == file_sha256(ckpt)  # `monet=` serves the official variant too
    # protocol 3 made monet-official Table 1's Monet; later versions keep it ("everything else as in protocol 3")
    assert saved["protocol"]["version"] >= 3 and "monet-official" in PROTOCOL_CHANGES[3]
    assert saved["protocol"]["changes"] == PROTOCOL_CHANGES[saved["protocol"]["version"]]


def test_cli_transform_weights_syntax(capsys, ckpt):
    with pytest.raises(SystemExit) as exit_:
        robust_eval(["--model", "resnet18", "--transform-weights", "monet", "--data", "x"])
    assert exit_.value.code == 2 and "NAME=PATH" in capsys.readouterr().err


def test_robust_cache_info_verify_clear(ckpt, tmp_path, crops, capsys):
    monet(ckpt, tmp_path).apply_batch(crops, ["a/1.JPEG", "a/2.JPEG"])
    assert robust_cache(["--dir", str(tmp_path), "info"]) == 0
    out = capsys.readouterr().out
    assert "monet-" in out and "2 crops" in out and file_sha256(ckpt) in out and "36x44: 2" in out
    assert robust_cache(["--dir", str(tmp_path), "verify"]) == 0
    assert "2 good, 0 bad" in capsys.readouterr().out
    entry = next((tmp_path / "style").rglob("*.png"))
    img = np.asarray(Image.open(entry)).copy()
    img[0, 0, 0] ^= 1  # one flipped bit, re-saved as a valid PNG without the right hash
    Image.fromarray(img).save(entry)
    assert robust_cache(["--dir", str(tmp_path), "verify"]) == 1
    assert "BAD" in capsys.readouterr().err
    assert robust_cache(["--dir", str(tmp_path), "verify", "--delete-bad"]) == 0 and not entry.exists()
    assert robust_cache(["--dir", str(tmp_path), "clear", "vangogh"]) == 0
    assert "cleared 0" in capsys.readouterr().out
    assert robust_cache(["--dir", str(tmp_path), "clear", "--yes"]) == 0
    assert "cleared 1" in capsys.readouterr().out and stylecache.cache_info(tmp_path) == []


# --- the official test pipeline ---------------------------------------------------------------------------


# The official test pipeline's own steps, as torchvision objects (get_transform(opt) of the official code, test
# options: load_size 256, resize_and_crop, no flip) and its tensor2im, written out independently of the module.
OFFICIAL_LOADER = T.Compose([T.Resize([256, 256], T.InterpolationMode.BICUBIC), T.RandomCrop(256), T.ToTensor(),
                             T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])


def tensor2im(y: torch.Tensor) -> np.ndarray:
    return ((np.transpose(y[0].cpu().float().numpy(), (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)


def official_tool_png(generator: nn.Module, path: Path, folder: Path) -> Path:
    """What test.py writes for ``path``: <stem>_fake.png, 256x256."""
    with torch.no_grad():
        fake = tensor2im(generator(OFFICIAL_LOADER(Image.open(path).convert("RGB"))[None]))
    out = folder / f"{path.stem}_fake.png"
    Image.fromarray(fake).save(out)
    return out


def test_official_pipeline_squashes_to_256_and_truncates(generator, sample_val, tmp_path):
    path = sorted(sample_val.rglob("*.JPEG"))[0]
    out = stylize_official(Image.open(path), generator)
    assert out.size == (256, 256) and out.mode == "RGB"
    tool = Image.open(official_tool_png(generator, path, tmp_path))
    assert np.array_equal(np.asarray(out), np.asarray(tool))


class Spy(nn.Module):
    """Logits from the mean colour; keeps every input batch (with mean 0 / std 1 it sees the crops' pixels)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 1000)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.proj(x.mean((2, 3)))


def stand_in(x: torch.Tensor) -> torch.Tensor:
    """A cheap generator stand-in for the tests of what happens around it (the real one costs 50 GMACs at 256x256 and
    is checked on its own above): per-pixel, channels swapped, values over the whole (-1, 1) range."""
    return torch.tanh(x.flip(1) * 1.7 - 0.3)


def test_official_variant_geometry_step_by_step(ckpt, generator, sample_val, tmp_path, monkeypatch):
    """Each step of monet-official against its torchvision/PIL equivalent on shared images of several shapes."""
    CountCalls(monkeypatch, replacement=stand_in)
    data = few_images(sample_val, 3, tmp_path / "val")
    paths = [data / rel for rel, _ in ImageNetVal(data).samples]
    assert len({Image.open(p).size for p in paths}) > 1 and any(len(set(Image.open(p).size)) == 2 for p in paths)
    shift = create_transform("monet-official", weights=ckpt, cache_dir=tmp_path / "cache")
    shift.prepare(progress=False)
    # 1. the squash: the official Resize([256, 256], BICUBIC) on the PIL image, aspect ratio not kept
    squashed = torch.stack([shift.prepare_image(load_rgb(p)) for p in paths])
    resize = T.Compose([T.Resize([256, 256], T.InterpolationMode.BICUBIC), T.PILToTensor()])
    assert torch.equal(squashed, torch.stack([resize(Image.open(p).convert("RGB")) for p in paths]))
    # 2. the generator and the 8-bit round trip: the tool's PNG files, bit for bit (the engine hands the
    #    shift uint8 / 255, exactly ToTensor's values)
    out = shift.apply_batch(squashed.float().div(255), [str(p) for p in paths])
    pngs = [official_tool_png(generator, p, tmp_path) for p in paths]
    as_bytes = (out * 255).round().to(torch.uint8)
    assert torch.equal(as_bytes.float() / 255, out)  # on the 8-bit grid
    for pixels, png in zip(as_bytes, pngs):
        assert np.array_equal(pixels.permute(1, 2, 0).numpy(), np.asarray(Image.open(png)))
    # 3. the model's own resize and crop: what the engine classifies is torchvision's Resize + CenterCrop of the
    #    tool's PNGs, as evaluating a folder of them (the official IBN-Net eval: shorter side 256, centre 224)
    spy = Spy()
    raw_pixels = DataConfig(resize=256, crop=224, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    evaluate(spy, data, "monet-official", data_config=raw_pixels, batch_size=8, workers=0, progress=False,
             transform_weights={"monet": ckpt})
    _, classified = spy.seen  # the clean pass, then the image-stage pass
    eval_geometry = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    by_hand = torch.stack([eval_geometry(Image.open(png).convert("RGB")) for png in pngs]).float() / 255
    assert classified.shape == (3, 3, 224, 224) and torch.equal(classified, by_hand)


def official_inputs(sample_val: Path, n: int = 2) -> tuple[torch.Tensor, list[str]]:
    """The squashed 256x256 inputs of ``n`` shared images, as the engine hands them to apply_batch."""
    paths = sorted(sample_val.rglob("*.JPEG"))[:n]
    images = torch.stack([cyclegan.pil_to_tensor(cyclegan.official_input(load_rgb(p))) for p in paths])
    return images.float().div(255), [str(p.relative_to(sample_val)) for p in paths]


def test_official_variant_cached_equals_fresh_and_stylize_official(ckpt, generator, sample_val, tmp_path,
                                                                   monkeypatch):
    counter = CountCalls(monkeypatch, replacement=stand_in)
    x, keys = official_inputs(sample_val)
    make = functools.partial(create_transform, "monet-official", weights=ckpt)
    first = make(cache_dir=tmp_path / "cache")
    stored = first.apply_batch(x, keys)
    fresh = make(cache=False).forward(x)  # never touches a cache
    again = make(cache_dir=tmp_path / "cache")  # a new process, the same cache
    cached = again.apply_batch(x, ["other/path.png", "y.png"])  # keyed by the squashed image's bytes
    assert counter.images == 4 and again.cache_hits == 2 and again.generated == 0
    assert torch.equal(cached, fresh) and torch.equal(stored, fresh)
    # One pipeline: stylize_official gives the same bytes.
    for i, key in enumerate(keys):
        official = np.asarray(stylize_official(Image.open(sample_val / key), generator))
        assert np.array_equal(official, (fresh[i] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    entries = sorted((tmp_path / "cache" / "style").rglob("*.png"))
    assert len(entries) == 2 and {e.parent.parent.name for e in entries} == {"256x256"}
    key = stylecache.content_key((x[0] * 255).round().to(torch.uint8).numpy())
    assert key in {e.stem for e in entries}
    namespace = entries[0].parents[2]
    sha = file_sha256(ckpt)
    assert namespace.name == f"monet-{sha[:16]}-official-floor-v1"  # its own namespace beside the crop variant's
    meta = json.loads((namespace / "meta.json").read_text())
    assert meta["shift"] == "monet-official" and meta["generator_sha256"] == sha
    # The crop variant of the same 256x256 input rounds instead of truncating: another namespace, other values.
    crop = monet(ckpt, tmp_path / "cache")
    rounded = crop.apply_batch(x, keys)
    assert crop.generated == 2 and 0 < (rounded - fresh).abs().max() * 255 <= 1 + 1e-4
    assert (rounded >= fresh).all() and len(stylecache.cache_info(tmp_path / "cache")) == 2


@pytest.mark.parametrize("name", ["monet", "monet-official"])
def test_second_evaluation_does_no_generator_work(name, ckpt, sample_val, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTBENCH_IBN_CACHE", str(tmp_path / "cache"))  # the default location
    monkeypatch.setitem(cyclegan._GENERATOR_BATCH, "cpu", 8)  # the device's batching (CPU's default is 1)
    data = few_images(sample_val, 3, tmp_path / "val")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000))
    counter = CountCalls(monkeypatch, replacement=stand_in)
    run = functools.partial(evaluate, net, data, name, data_config=DataConfig(resize=40, crop=36), batch_size=2,
                            workers=0, progress=False, transform_weights={"monet": ckpt})
    first = run()
    assert counter.images == 3 and counter.calls == 2  # batched: one generator call per batch of 2 (then 1)
    second = run()
    assert counter.images == 3  # nothing generated the second time
    assert np.array_equal(first.predictions[name], second.predictions[name])
    definition = second.domains[1]["shift"]
    assert definition["params"]["generator_sha256"] == file_sha256(ckpt) and definition["name"] == name
    assert definition["weights"]["location"] == str(ckpt.resolve()) and definition["weights"]["source"] == "path"
    assert first.protocol["fingerprint"] == second.protocol["fingerprint"]
    size = "256x256" if name == "monet-official" else "36x36"  # the generator's input: squashed image or crop
    assert len(list((tmp_path / "cache" / "style").rglob(f"{size}/*/*.png"))) == 3


def test_one_weights_entry_serves_both_variants(ckpt, tmp_path):
    shifts = prepare_transforms(["monet", "monet-official"], weights={"monet": ckpt}, progress=False)
    assert {s.params()["generator_sha256"] for s in shifts.values()} == {file_sha256(ckpt)}
    other = tmp_path / "other.pth"
    torch.save(official_state(seed=1), other)
    shifts = prepare_transforms(["monet", "monet-official"], weights={"monet": ckpt, "monet-official": other},
                                progress=False)
    assert shifts["monet-official"].params()["generator_sha256"] == file_sha256(other)  # its own entry wins
    assert shifts["monet"].params()["generator_sha256"] == file_sha256(ckpt)
    with pytest.raises(TransformError, match=re.escape("transform_weights={'monet': '/path/to/style_monet.pth'}")):
        prepare_transforms(["monet-official"], progress=False)  # offline, no file: the flag that serves both


def test_list_transforms_shows_both_variants(capsys):
    assert robust_eval(["--list-transforms", "monet*"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(rows) == {"monet", "monet-official"}
    assert "Monet (crop)" in rows["monet"] and "on the crop, output rounded to 8 bits" in rows["monet"]
    assert "squashed to 256x256 bicubic, output truncated to 8 bits" in rows["monet-official"]
    assert rows["monet-official"].endswith("[Table 1]") and "[Table 1]" not in rows["monet"]


def test_stylize_folder_makes_an_evaluable_copy(ckpt, sample_val, tmp_path, monkeypatch):
    CountCalls(monkeypatch, replacement=lambda x: torch.tanh(x))  # fast stand-in; arithmetic tested above
    src = few_images(sample_val, 2, tmp_path / "val")
    dst = stylize_folder(src, tmp_path / "monet", weights=ckpt, progress=False)
    copy, original = ImageNetVal(dst), ImageNetVal(src)
    assert [Path(p).with_suffix("") for p, _ in copy.samples] == [Path(p).with_suffix("") for p, _ in original.samples]
    assert copy.labels == original.labels and Image.open(dst / copy.samples[0][0]).size == (256, 256)
    # The files are the monet-official shift's output, and went through its cache.
    shift = create_transform("monet-official", weights=ckpt)
    shift.prepare(progress=False)
    x = shift.prepare_image(load_rgb(src / original.samples[0][0]))[None].float().div(255)
    expected = (shift.apply_batch(x, ["k"])[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert shift.cache_hits == 1 and np.array_equal(np.asarray(Image.open(dst / copy.samples[0][0])), expected)
    # Evaluating the copy as clean images is evaluating monet-official on the originals.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000))
    run = functools.partial(evaluate, net, data_config=DataConfig(resize=40, crop=36), workers=0, progress=False)
    on_copy, official = run(dst, "clean"), run(src, "monet-official", transform_weights={"monet": ckpt})
    assert np.array_equal(on_copy.predictions["clean"], official.predictions["monet-official"])

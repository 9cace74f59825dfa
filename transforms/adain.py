"""AdaIN style transfer with a pool of style images: Stylized-ImageNet (Geirhos et al., ICLR 2019) on the fly.

The networks are those of the PyTorch port naoto0804/pytorch-AdaIN (Huang & Belongie, ICCV 2017), which
Geirhos' Stylized-ImageNet code takes over unchanged; they are rebuilt here from the port's layer lists, so
its released files load with strict keys:

* **encoder** ``vgg_normalised.pth``: the "normalised" VGG-19, a 53-module ``nn.Sequential`` (a 1x1 conv that
  maps [0, 1] RGB to the Caffe VGG's input, then VGG-19's sixteen 3x3 convs, each after a 1-pixel reflection
  pad and followed by a ReLU, with 2x2 ceil-mode max pools between the stages); keys ``0.weight`` ...
  ``51.bias``. Only the first 31 modules, up to relu4_1, are used.
* **decoder** ``decoder.pth``: a 29-module ``nn.Sequential`` from relu4_1's 512 channels back to RGB
  (reflection pads, 3x3 convs, ReLUs, nearest 2x upsampling where the encoder pools, no output activation);
  keys ``1.weight`` ... ``28.bias``.
* **AdaIN**, as the port's ``calc_mean_std`` and ``adaptive_instance_normalization``: per image and channel,
  the mean over HxW and ``std = sqrt(var + 1e-5)`` where ``var`` is the *unbiased* variance over HxW (divisor
  HxW - 1, torch's ``var`` default that the port relies on); ``t = (f_c - mean_c) / std_c * std_s + mean_s``,
  then the port's blend ``t = alpha * t + (1 - alpha) * f_c`` (test.py) and the decoder.

Protocol of ``adain{alpha}`` (a crop-stage shift), recorded in every result:

* **content**: the model's preprocessed crop (224x224 by default) in [0, 1], fed to the encoder unnormalised
  (its first conv does the VGG normalisation), fp32 with autocast off whatever ``--precision`` says. Sides that
  are not multiples of 8 (the encoder's three pools) are reflection-padded, centred, to the next multiple of 8
  (at least 16) and the output is cropped back; the raw decoder would return ``8 * ceil(n / 8)`` pixels.
* **style pool**: every image file directly inside ``style_dir`` (the datasets' extensions, .jpg .jpeg .png .bmp
  .webp in any case; other files, hidden files and sub-folders are left out and listed in the record), sorted by
  file name, each identified by its sha256; the pool's fingerprint is the sha256 of the ``"<sha256>  <name>"``
  lines (``sha256sum``'s format) in that order.
* **style choice** (:data:`STYLE_CHOICE`): image ``key`` (its relative path) under run seed ``seed`` gets pool
  entry ``int.from_bytes(sha256(f"{seed}:{key}").digest()[:8], "little") % n``. It depends on nothing else, so
  the pixels do not depend on batch size, batch order, workers or ranks, and every ``alpha`` of a sweep restyles
  an image with the same painting. (Geirhos drew styles from one ``RandomState(49809)`` stream in loader order,
  which ties an image's style to the order of the whole dataset.)
* **style image**, as Geirhos' ``crop_square_and_downsample``: RGB, the largest centred region with the
  content's aspect ratio (a square for square crops, ``left = (w - s) // 2``), resized to the content size with
  Lanczos. Geirhos called ``thumbnail(..., ANTIALIAS)``, which with the Pillow of 2018 is exactly ``resize``
  with Lanczos; current Pillow's ``thumbnail`` first shrinks by an integer factor (``reducing_gap``), which
  changes the pixels, so ``resize`` is used. Geirhos excluded paintings under 224 px; here a style image smaller
  than the content is enlarged. Each style is encoded once per run and content size, one image at a time (so
  its statistics do not depend on which batch needed it first); only its relu4_1 mean and std are kept.
* **output**: 8 bits the way torchvision's ``save_image`` wrote Geirhos' PNGs, ``uint8(clamp(y * 255 + 0.5, 0,
  255))`` (round half up), so a cached crop equals a fresh one bit for bit.
* **no identity**: ``adain0`` is ``decoder(encoder(x))``, the autoencoder's reconstruction, not ``x``.
* **numerics**: on the CPU the networks take one image per call (faster per image there than batches; see
  bench/bench_style.py) in channels_last, so an image's output does not depend on its batch. Other batch sizes,
  memory formats or devices change the float rounding in the last bits (about 1e-6), which can move a rare
  pixel by one grey level; the cache keeps whatever was computed first.

Stylized crops are cached on disk (:mod:`robustbench_ibn.stylecache`, the Monet cache) in one namespace per
alpha and weights pair; an entry's key is the sha256 of the input crop's content key and the chosen style
file's sha256, which determine the output exactly (the rest of the pool does not matter, so pools that share
paintings share entries).

Weights (``weights=``, ``--transform-weights adain=...``): a folder holding ``vgg_normalised.pth`` and
``decoder.pth``; or the two files (paths or URLs) joined by ``+``, encoder first: ``ENCODER+DECODER``; or, from
Python, a pair ``(encoder, decoder)``. Default: both files from the torch hub cache
(``<hub dir>/checkpoints``), downloaded from the port's v0.0.0 release when absent. No hash is published, so
the sha256 of each file used is recorded.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..hub import WeightsError, cached_download, file_sha256, read_state_dict
from ..options import option
from ..stylecache import StyleCache
from ..text import listing, number, positional
from ._base import Shift, TransformError, check_images, register_transform
from ._stylize import cached_apply, check_finite_output, check_layout, crop_keys, pad_to_multiple, progress_bar

__all__ = [
    "AdaINDecoder",
    "AdaINStyle",
    "NormalisedVGG",
    "StylePool",
    "adain_stylize",
    "adaptive_instance_norm",
    "feature_stats",
    "load_adain",
    "official_urls",
    "style_to_size",
    "weights_files",
]

ENCODER_FILE = "vgg_normalised.pth"
DECODER_FILE = "decoder.pth"
FILES = {"encoder": ENCODER_FILE, "decoder": DECODER_FILE}
URL_TEMPLATE = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/{file}"
EPS = 1e-5  # added to the variance (the port's calc_mean_std)
RELU4_1 = 31  # encoder modules used: up to and including relu4_1
MIN_SIDE = 9  # three ceil-mode pools must leave at least 2 pixels for relu4_1's reflection pad and the variance
VARIANT = "crop-v1"  # cache namespace suffix; change it (and AdaINStyle.version) whenever the outputs change
STYLE_CHOICE = ('pool[int.from_bytes(sha256(f"{seed}:{image path}").digest()[:8], "little") % n], the pool sorted '
                "by file name")
_BATCH = {"cpu": 1, "cuda": 32}  # network images per call: on CPU batching is slower per image (bench_style.py)

_VGG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
_DECODER = (256, "U", 256, 256, 256, 128, "U", 128, 64, "U", 64, 3)


def official_urls() -> dict[str, str]:
    """The download URLs of the two files (the port's v0.0.0 release assets), by role."""
    return {role: URL_TEMPLATE.format(file=file) for role, file in FILES.items()}


# --- the networks (the port's layer lists, so its files load with strict keys) ------------------------------


def _conv_stack(spec: Sequence[int | str], channels: int, between: dict[str, nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for item in spec:
        if isinstance(item, str):
            layers.append(between[item])
        else:
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, item, 3), nn.ReLU(inplace=True)]
            channels = item
    return layers


class NormalisedVGG(nn.Sequential):
    """The port's ``vgg_normalised`` network: [0, 1] RGB in, VGG-19 features out; its first ``depth`` modules.

    ``NormalisedVGG()`` is the whole 53-module file layout (keys ``0.weight`` ... ``51.bias``);
    ``NormalisedVGG(31)`` the AdaIN encoder, up to relu4_1.
    """

    def __init__(self, depth: int = 53) -> None:
        pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        layers = [nn.Conv2d(3, 3, 1), *_conv_stack(_VGG, 3, {"M": pool})]
        super().__init__(*layers[:depth])


class AdaINDecoder(nn.Sequential):
    """The port's decoder: relu4_1 features (512 channels) to RGB; 29 modules, keys ``1.weight`` ... ``28.bias``."""

    def __init__(self) -> None:
        layers = _conv_stack(_DECODER, 512, {"U": nn.Upsample(scale_factor=2, mode="nearest")})
        super().__init__(*layers[:-1])  # no activation after the last conv


def _read(path: Path, file: str) -> dict[str, Any]:
    try:
        return read_state_dict(path)
    except WeightsError as e:
        raise TransformError(f"{e} (expected the AdaIN {file})") from e


def _layout_hint(state: dict[str, Any], role: str, other: nn.Module) -> str:
    keys = {"encoder": "34 keys 0.weight ... 51.bias, 0.weight [3, 3, 1, 1]",
            "decoder": "18 keys 1.weight ... 28.bias, 1.weight [256, 512, 3, 3]"}
    hint = f"Expected the pytorch-AdaIN {FILES[role]} ({keys[role]})."
    if state.keys() == other.state_dict().keys():
        hint += (f" This file has the {'decoder' if role == 'encoder' else 'encoder'}'s layout: were the two files "
                 "given the other way round? The order is ENCODER+DECODER.")
    return hint


def load_adain(
    encoder_path: str | os.PathLike[str], decoder_path: str | os.PathLike[str]
) -> tuple[nn.Module, nn.Module]:
    """The AdaIN encoder (up to relu4_1) and decoder from the port's two files, both checked with strict keys.

    The whole 53-module ``vgg_normalised.pth`` layout must match (a truncated or other VGG is refused), then
    its first 31 modules are kept.

    Raises:
        TransformError: a file is unreadable or does not fit (missing, unexpected and mis-shaped keys listed).
    """
    encoder_path, decoder_path = Path(encoder_path), Path(decoder_path)
    encoder_state, decoder_state = _read(encoder_path, ENCODER_FILE), _read(decoder_path, DECODER_FILE)
    with torch.device("meta"):  # layouts only: no memory, no init
        full_vgg, decoder_layout = NormalisedVGG(), AdaINDecoder()
    check_layout(encoder_state, full_vgg, encoder_path, "the AdaIN encoder (normalised VGG-19, 53 modules)",
                 _layout_hint(encoder_state, "encoder", decoder_layout))
    check_layout(decoder_state, decoder_layout, decoder_path, "the AdaIN decoder",
                 _layout_hint(decoder_state, "decoder", full_vgg))
    encoder, decoder = NormalisedVGG(RELU4_1), AdaINDecoder()
    encoder.load_state_dict({k: v for k, v in encoder_state.items() if int(k.split(".")[0]) < RELU4_1}, strict=True)
    decoder.load_state_dict(decoder_state, strict=True)
    return encoder.eval().requires_grad_(False), decoder.eval().requires_grad_(False)


# --- the functional layer -----------------------------------------------------------------------------------


def feature_stats(features: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel: mean over HxW and ``sqrt(unbiased variance + eps)``, each ``[B, C, 1, 1]``.

    Example:
        >>> mean, std = feature_stats(torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2), eps=0.0)
        >>> mean.item(), round(std.item() ** 2, 6)  # variance with divisor HxW - 1 = 3
        (1.5, 1.666667)
    """
    flat = features.flatten(2)
    return flat.mean(2)[..., None, None], (flat.var(2, correction=1) + eps).sqrt()[..., None, None]


def adaptive_instance_norm(
    content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor, eps: float = EPS
) -> torch.Tensor:
    """AdaIN: each channel of ``content`` normalised by its own statistics, then given the style's."""
    mean, std = feature_stats(content, eps)
    return (content - mean) / std * style_std + style_mean


def adain_stylize(
    encoder: nn.Module, decoder: nn.Module, content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
    alpha: float, *, channels_last: bool = False,
) -> torch.Tensor:
    """AdaIN style transfer of a float ``[B, 3, H, W]`` batch in [0, 1]; returns the 8-bit result as uint8.

    ``style_mean``/``style_std`` (``[B, 512, 1, 1]``) are the style images' relu4_1 statistics
    (:func:`feature_stats`). fp32 with autocast off; sides that are not multiples of 8 are reflection-padded
    (centred) and the output cropped back, so the result has the input's size (any side >= 9).
    """
    h, w = content.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise TransformError(f"Expected images of at least {MIN_SIDE}x{MIN_SIDE} pixels for AdaIN (three pools before "
                             f"relu4_1), but got {h}x{w}.")
    with torch.autocast(content.device.type, enabled=False):
        x, (left, _, top, _) = pad_to_multiple(content.float(), 8, 16)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = encoder(x)
        t = adaptive_instance_norm(features, style_mean, style_std)
        t = t * alpha + features * (1 - alpha)  # the port's blend, in its order
        y = decoder(t)[..., top:top + h, left:left + w]
    check_finite_output(y, "the AdaIN decoder")
    return y.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)  # torchvision's save_image


def style_to_size(image: Image.Image, height: int, width: int) -> Image.Image:
    """A style image for content of ``height`` x ``width``: the largest centred region of that aspect ratio,
    resized with Lanczos (Geirhos' centre square crop and downsampling, for square content).

    Example:
        >>> style_to_size(Image.new("RGB", (300, 200)), 224, 224).size
        (224, 224)
    """
    w, h = image.size
    if w * height > h * width:  # wider than the content: keep the full height
        crop_w, crop_h = min(w, round(h * width / height)), h
    else:
        crop_w, crop_h = w, min(h, round(w * height / width))
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    region = image.crop((left, top, left + crop_w, top + crop_h))
    return region.resize((width, height), Image.Resampling.LANCZOS)


# --- the style pool -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StylePool:
    """The style images of a folder, sorted by file name, each identified by the sha256 of its file.

    Build it with :meth:`scan`. ``ignored`` lists the folder's entries that are not style images (other
    extensions, sub-folders, hidden files), so a record shows what was left out.
    """

    root: Path
    names: tuple[str, ...]
    sha256: tuple[str, ...]
    ignored: tuple[str, ...] = ()

    @classmethod
    def scan(cls, style_dir: str | os.PathLike[str]) -> StylePool:
        """Every image file directly in ``style_dir``, hashed, with its header read.

        Raises:
            TransformError: no such folder, no image in it, or files that are not readable images (all listed).
        """
        from ..data import IMAGE_EXTENSIONS  # the datasets' image files; data is not imported at module level

        root = Path(style_dir).expanduser()
        if not root.is_dir():
            raise TransformError(f"style dir {style_dir}: no such folder ({root.absolute()}). Expected a folder of "
                                 "style images, e.g. paintings (the project's ../shared/data/styles holds 20).")
        entries = sorted(root.iterdir(), key=lambda p: p.name)
        images = [p for p in entries
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS]
        ignored = tuple(p.name + ("/" if p.is_dir() else "") for p in entries if p not in images)
        if not images:
            found = f"only {listing(ignored)}" if ignored else "it is empty"
            raise TransformError(f"Expected style images ({' '.join(IMAGE_EXTENSIONS)}) in {root}, but {found}.")
        bad = []
        for path in images:
            try:
                with Image.open(path) as image:
                    image.size  # noqa: B018 (the header is parsed on open; this fails for non-images)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                bad.append(f"{path.name} ({type(e).__name__}: {e})")
        if bad:
            raise TransformError(f"{len(bad)} of the {len(images)} style images in {root} cannot be read as images: "
                                 f"{listing(bad)}. Remove or replace them: the pool is every image file in the folder.")
        return cls(root, tuple(p.name for p in images), tuple(file_sha256(p) for p in images), ignored)

    def __len__(self) -> int:
        return len(self.names)

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of the ``"<sha256>  <name>"`` lines in pool order (what ``sha256sum`` prints)."""
        lines = "".join(f"{sha}  {name}\n" for name, sha in zip(self.names, self.sha256))
        return hashlib.sha256(lines.encode()).hexdigest()

    def choose(self, key: str, seed: int) -> int:
        """The pool index of image ``key``'s style under run ``seed`` (:data:`STYLE_CHOICE`)."""
        digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "little") % len(self.names)

    def load(self, index: int, height: int, width: int) -> torch.Tensor:
        """Style ``index`` prepared for content of that size (:func:`style_to_size`): uint8 ``[3, H, W]``.

        The bytes read must still have the sha256 recorded by :meth:`scan` (cached outputs are keyed by it).
        """
        from ..data import DataError, load_rgb  # the suite's one image loader (16-bit PNGs scaled, not clipped)

        path = self.root / self.names[index]
        try:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != self.sha256[index]:
                raise ValueError("the file changed since the run started (its sha256 differs)")
            rgb = load_rgb(path, content=data)
        except DataError as e:
            raise TransformError(f"cannot use style image {path}: {getattr(e, 'reason', e)}. Replace or remove it and "
                                 "run again (finished batches are kept).") from e
        except (OSError, ValueError) as e:
            raise TransformError(f"cannot use style image {path}: {type(e).__name__}: {e}. Replace or remove it and "
                                 "run again (finished batches are kept).") from e
        pixels = bytearray(style_to_size(rgb, height, width).tobytes())
        return torch.frombuffer(pixels, dtype=torch.uint8).view(height, width, 3).permute(2, 0, 1)

    def record(self, most: int = 100) -> dict[str, Any]:
        """What the result records about the pool: folder, size, fingerprint, and its files when at most ``most``."""
        files = [[name, sha] for name, sha in zip(self.names, self.sha256)] if len(self) <= most else None
        return {"dir": str(self.root.resolve()), "n": len(self), "fingerprint": self.fingerprint,
                "order": "sorted by file name", "files": files, "ignored": list(self.ignored)}


# --- weights ------------------------------------------------------------------------------------------------


def weights_files(
    weights: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None,
) -> tuple[str, str] | None:
    """``weights=`` as (encoder, decoder) locations (paths or URLs); ``None`` means the official files.

    Accepted: a folder holding ``vgg_normalised.pth`` and ``decoder.pth``; ``"ENCODER+DECODER"`` (two files
    or URLs, encoder first); a pair ``(encoder, decoder)``.

    Example:
        >>> weights_files("w/vgg.pth+w/dec.pth")
        ('w/vgg.pth', 'w/dec.pth')
    """
    if weights is None:
        return None
    usage = ("a folder holding vgg_normalised.pth and decoder.pth, or ENCODER+DECODER (two files or URLs, encoder "
             "first), e.g. --transform-weights adain=models/ or adain=models/vgg_normalised.pth+models/decoder.pth")
    if isinstance(weights, (tuple, list)):
        if len(weights) != 2:
            raise TransformError(f"Expected the AdaIN weights as a pair (encoder, decoder), but got {len(weights)} "
                                 f"items: {weights!r}.")
        return os.fspath(weights[0]), os.fspath(weights[1])
    text = os.fspath(weights)
    folder = Path(text).expanduser()
    if folder.is_dir():
        return str(folder / ENCODER_FILE), str(folder / DECODER_FILE)
    parts = text.split("+")
    if len(parts) == 2 and all(p.strip() for p in parts):
        return parts[0].strip(), parts[1].strip()
    problem = "no such folder" if len(parts) == 1 else f"{len(parts)} '+'-separated parts"
    raise TransformError(f"Expected the AdaIN weights as {usage}; but got {text!r} ({problem}).")


@dataclass(frozen=True)
class _Networks:
    encoder: nn.Module
    decoder: nn.Module
    files: dict[str, dict[str, Any]]  # role -> official_url, location, source, sha256


# --- the shift ----------------------------------------------------------------------------------------------


class AdaINStyle(Shift):
    """AdaIN style transfer of the crop with a style image per crop from a pool; 8-bit output, cached on disk.

    Args:
        alpha: the content/style feature blend in [0, 1] (1 = full style, the official default).
        weights: the two files (:func:`weights_files`); default: the torch hub cache, else a download.
        style_dir: the folder of style images (``--style-dir``); required before :meth:`prepare`.
        cache: keep stylized crops on disk (:mod:`robustbench_ibn.stylecache`) and reuse them.
        cache_dir: cache root (default ``$ROBUSTBENCH_IBN_CACHE`` or ``~/.cache/robustbench_ibn``).
        batch_size: images per network call (default per device: 1 on CPU, 32 on CUDA).
        channels_last: run the networks in channels_last memory format (faster on this project's CPU, see
            bench/bench_style.py; the values are the same up to float rounding).

    :meth:`prepare` (the runner calls it at set-up) scans and hashes the pool and finds, hashes and loads the
    weights; :meth:`definition` then records both.
    """

    version = 1
    stochastic = True  # each image's style is drawn from the run seed and the image's path

    def __init__(
        self, alpha: float = 1.0, weights: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None, *,
        style_dir: str | os.PathLike[str] | None = None, cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None, batch_size: int | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1 or math.isnan(alpha):
            raise TransformError(f"Expected alpha of adain{{alpha}} (the content/style feature blend) in [0, 1], but "
                                 f"got {alpha!r}: 1 is full style, 0 the decoded content features.")
        if batch_size is not None and batch_size < 1:
            raise TransformError(f"Expected batch_size >= 1 for AdaIN, but got {batch_size}.")
        self.alpha = float(alpha)
        self.name = f"adain{positional(self.alpha)}"
        self.label = f"AdaIN α={number(self.alpha)}"
        self.weight_files = weights_files(weights)
        self.style_dir = os.fspath(style_dir) if style_dir is not None else None
        self.use_cache = cache
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.channels_last = channels_last
        self.progress = False
        self.decoded = 0  # images run through the decoder by this instance (cache misses)
        self.cache_hits = 0
        self.style_encodings = 0  # style images run through the encoder (once per style and content size)
        self._pool: StylePool | None = None
        self._nets: _Networks | None = None
        self._cache: StyleCache | None = None
        self._stats: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._placement: tuple[torch.device, torch.memory_format] | None = None

    # -- description -------------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        files = self._nets.files if self._nets else {}
        return {
            "alpha": self.alpha,
            "encoder": "normalised VGG-19 (pytorch-AdaIN vgg_normalised.pth) up to relu4_1",
            "encoder_sha256": files["encoder"]["sha256"] if files else None,
            "decoder_sha256": files["decoder"]["sha256"] if files else None,
            "adain": ("per-channel mean and sqrt(unbiased variance + 1e-5) over HxW; t = alpha * AdaIN(f_c, f_s) "
                      "+ (1 - alpha) * f_c"),
            "style_pool": {"n": len(self._pool), "fingerprint": self._pool.fingerprint} if self._pool else None,
            "style_choice": STYLE_CHOICE,
            "style_image": ("RGB, largest centred region of the content's aspect ratio, Lanczos resize to the "
                            "content size"),
            "input": ("the model's crop in [0, 1]; sides reflection-padded (centred) to a multiple of 8, output "
                      "cropped back"),
            "output": "uint8(clamp(y * 255 + 0.5, 0, 255)) (torchvision save_image)",
            "precision": "fp32",
        }

    def describe(self) -> str:
        return (f"AdaIN style transfer (pytorch-AdaIN encoder and decoder, alpha {number(self.alpha)}) of the crop, "
                "one style image per crop chosen from the pool by (seed, image path), output in 8 bits")

    def definition(self) -> dict[str, Any]:
        out = super().definition()
        urls = official_urls()
        files = self._nets.files if self._nets else {}
        out["weights"] = {role: files.get(role, {"official_url": urls[role], "location": None, "source": None,
                                                 "sha256": None}) for role in FILES}
        out["style_pool"] = self._pool.record() if self._pool else {"dir": self.style_dir}
        out["stochastic"] = {"seed": int(self.seed), "per_image": f"the style image: {STYLE_CHOICE}"}
        return out

    # -- set-up --------------------------------------------------------------------------------------------
    def prepare(self, *, progress: bool = True) -> None:
        """Scan and hash the style pool, find (download), hash and load both networks; raise saying what to do."""
        self.progress = progress
        if self._nets is not None:
            return
        if self.style_dir is None:
            raise TransformError(f"{self.name} needs a pool of style images: pass --style-dir DIR (Python: "
                                 f"create_transform({self.name!r}, style_dir=DIR)), any folder of images, e.g. "
                                 "paintings (the project's ../shared/data/styles holds 20).")
        pool = StylePool.scan(self.style_dir)
        located = self._locate(progress)
        urls = official_urls()
        files = {role: {"official_url": urls[role], "location": str(path.resolve()), "source": source,
                        "sha256": file_sha256(path)} for role, (path, source) in located.items()}
        encoder, decoder = load_adain(located["encoder"][0], located["decoder"][0])
        self._pool, self._nets = pool, _Networks(encoder, decoder, files)
        if self.use_cache:
            shas = files["encoder"]["sha256"], files["decoder"]["sha256"]
            meta = {"shift": "adain", "alpha": self.alpha, "encoder_sha256": shas[0], "decoder_sha256": shas[1],
                    "weights_location": " + ".join(f["location"] for f in files.values()), "variant": VARIANT,
                    "shift_version": self.version, "description": self.describe(), "params": self.params()}
            meta["params"].pop("style_pool")  # entries are keyed by the chosen style's sha256, not by the pool
            self._cache = StyleCache(f"{self.name}-{shas[0][:8]}{shas[1][:8]}-{VARIANT}", meta, self.cache_dir)

    def _locate(self, progress: bool) -> dict[str, tuple[Path, str]]:
        """role -> (file, source): "path", "url", "hub cache" or "download"."""
        urls = official_urls()
        if self.weight_files is not None:
            out = {}
            for role, location in zip(FILES, self.weight_files):
                if location.startswith(("http://", "https://")):
                    try:
                        out[role] = (cached_download(location, None, progress=progress), "url")
                    except WeightsError as e:
                        raise TransformError(f"the AdaIN {role} ({FILES[role]}) could not be obtained: {e}") from e
                    continue
                path = Path(location).expanduser()
                if not path.is_file():
                    raise TransformError(f"{option('transform_weights', ('adain', location))}: the {role} file "
                                         f"{location} does not exist ({path.absolute()}). Expected {FILES[role]} "
                                         f"(official URL {urls[role]}).")
                out[role] = (path, "path")
            return out
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        out, failures = {}, []
        for role, file in FILES.items():
            source = "hub cache" if (hub / file).is_file() else "download"
            try:  # the official files keep their plain names, so a copy put there by hand is found
                out[role] = (cached_download(urls[role], None, progress=progress, cache_name=file), source)
            except WeightsError as e:
                failures.append(f"{file} ({e.__cause__ or e})")
        if failures:
            raise TransformError(
                f"the AdaIN shifts need two files, {ENCODER_FILE} ({urls['encoder']}) and {DECODER_FILE} "
                f"({urls['decoder']}), looked for in {hub}; these are not there and could not be downloaded: "
                f"{'; '.join(failures)}. Download both elsewhere and pass {option('transform_weights', ('adain', 'DIR'))} "
                f"(a folder holding both) or {option('transform_weights', ('adain', 'ENCODER+DECODER'))}, or put them "
                f"in {hub}."
            )
        return out

    def _ready(self) -> tuple[StylePool, _Networks]:
        if self._nets is None:
            self.prepare(progress=self.progress)
        assert self._pool is not None and self._nets is not None
        return self._pool, self._nets

    @property
    def pool(self) -> StylePool:
        """The style pool (scanned by :meth:`prepare`)."""
        return self._ready()[0]

    # -- application ---------------------------------------------------------------------------------------
    def choose_styles(self, keys: Sequence[str]) -> list[int]:
        """The pool index of each image's style (:data:`STYLE_CHOICE`, with this shift's run seed)."""
        pool, _ = self._ready()
        return [pool.choose(str(key), self.seed) for key in keys]

    def style_statistics(self, styles: Sequence[int], height: int, width: int,
                          device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """relu4_1 mean and std ``[B, 512, 1, 1]`` of pool entries ``styles`` for content of this size.

        Each style is loaded, prepared (:func:`style_to_size`) and encoded once per content size, alone, and kept
        for the rest of the run.
        """
        pool, nets = self._placed(device)
        with torch.inference_mode(), torch.autocast(device.type, enabled=False):
            for index in sorted(set(styles)):
                if (index, height, width) not in self._stats:
                    style = pool.load(index, height, width).to(device)[None].float().div_(255)
                    mean, std = feature_stats(nets.encoder(style.contiguous(memory_format=self._memory_format)))
                    self._stats[index, height, width] = mean[0], std[0]
                    self.style_encodings += 1
        pairs = [self._stats[index, height, width] for index in styles]
        return torch.stack([m for m, _ in pairs]).to(device), torch.stack([s for _, s in pairs]).to(device)

    @property
    def _memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def _placed(self, device: torch.device) -> tuple[StylePool, _Networks]:
        """Pool and networks, the networks on ``device`` in this shift's memory format."""
        pool, nets = self._ready()
        placement = (device, self._memory_format)
        if self._placement != placement:
            for net in (nets.encoder, nets.decoder):
                net.to(placement[0], memory_format=placement[1])
            self._placement = placement
        return pool, nets

    def stylize(self, images: torch.Tensor, styles: Sequence[int]) -> torch.Tensor:
        """Fresh (never cached) uint8 stylization of a batch with explicit pool indices, on the batch's device."""
        device = images.device
        _, nets = self._placed(device)
        step = self.batch_size or _BATCH.get(device.type, 8)
        out = []
        with torch.inference_mode(), progress_bar(self.label, len(images), self.progress) as bar:
            mean, std = self.style_statistics(styles, *images.shape[-2:], device)
            for start in range(0, len(images), step):
                chunk = slice(start, start + step)
                out.append(adain_stylize(nets.encoder, nets.decoder, images[chunk], mean[chunk], std[chunk], self.alpha,
                                         channels_last=self.channels_last))
                bar.update(len(out[-1]))
        self.decoded += len(images)
        return torch.cat(out)

    def forward(self, images: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        """Freshly computed (never cached) stylization: float, 8-bit values, same shape and device.

        ``keys`` (the images' relative paths) choose the styles.
        """
        check_images(images, self.label)
        self._check_keys(images, keys)
        return self.stylize(images, self.choose_styles(keys)).to(images.dtype).div_(255)

    def apply_batch(self, images: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        """The stylization of a batch, read from the cache where present; misses are computed and stored.

        An entry's key is the sha256 of the crop's content key and the chosen style file's sha256.
        """
        check_images(images, self.label)
        self._check_keys(images, keys)
        if not self.use_cache:
            return self(images, keys)
        pool, _ = self._ready()
        assert self._cache is not None
        styles = self.choose_styles(keys)
        entries = [hashlib.sha256(f"{crop}:{pool.sha256[s]}".encode()).hexdigest()
                   for crop, s in zip(crop_keys(images), styles)]
        out, hits = cached_apply(
            self._cache, images, entries,
            lambda misses: self.stylize(images[torch.tensor(misses, device=images.device)],
                                        [styles[i] for i in misses]),
            [f"{key} style {pool.names[s]}" for key, s in zip(keys, styles)],
        )
        self.cache_hits += hits
        return out.to(images.device).to(images.dtype).div_(255)

    def _check_keys(self, images: torch.Tensor, keys: Sequence[str]) -> None:
        if len(keys) != len(images):
            raise TransformError(f"Expected one image key per image for {self.name} (each image's style is chosen by "
                                 f"its path), but got {len(keys)} keys for {len(images)} images.")


@register_transform("adain{alpha}", example=1,
                    param_help="content/style feature blend in [0, 1], 1 = full style (needs --style-dir)")
def adain(alpha: float, weights: str | os.PathLike[str] | Sequence[str] | None = None,
          style_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> Shift:
    """AdaIN with a style pool (``style_dir``: ``--style-dir``); no identity (``adain0`` is the autoencoder's
    reconstruction, not the input)."""
    return AdaINStyle(alpha, weights, style_dir=style_dir, **kwargs)

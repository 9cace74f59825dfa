"""The CycleGAN style shifts: Table 1's Monet row, plus Cézanne, Ukiyo-e and Van Gogh.

The generator is the official pretrained CycleGAN ``resnet_9blocks`` (junyanz/pytorch-CycleGAN-and-pix2pix,
``--model test --no_dropout``), rebuilt with the official class names and ``state_dict`` keys so the
published ``style_<name>.pth`` files load with strict keys. The files carry stray InstanceNorm running
statistics from a 2018 version of the code; exactly those entries are dropped before the strict load, as
the official loader does, so the generator always normalizes with per-image statistics (keeping them in eval
mode would change the output by up to 2.0 on the [-1, 1] scale).

Protocol of the crop shifts (``monet``, ``cezanne``, ``ukiyoe``, ``vangogh``), recorded in every result:

* the generator runs on the model's preprocessed crop (224x224 by default), on the evaluation device, in
  fp32 whatever ``--precision`` says (so the stylized images do not depend on the classifier's precision);
* input ``x`` in [0, 1] goes in as ``(x - 0.5) / 0.5`` in [-1, 1] (torchvision's Normalize, as the official
  test pipeline does), the output ``y`` comes back as ``(y + 1) / 2``;
* the output is **quantized to 8 bits by rounding**: ``round((y + 1) / 2 * 255) / 255``. Every other input
  the classifier sees is an 8-bit image, the official tool's own output is an 8-bit PNG, and an 8-bit result
  can be cached losslessly, so a cached crop equals a freshly generated one bit for bit. Rounding rather
  than the official tool's truncation keeps the quantization unbiased (truncation darkens by 0.5/255 on
  average); the ``official`` pipeline below truncates, to match the tool's files;
* sides that are not multiples of 4 (the generator's two stride-2 stages) are reflection-padded, centred,
  to the next multiple of 4 (at least 8), and the output is cropped back to the input's size and position.
  Without this the generator would silently return ``4 * ceil(n / 4)`` pixels per side.

Protocol of the official variants (``monet-official``, ``cezanne-official``, ``ukiyoe-official``,
``vangogh-official``; :class:`OfficialCycleGANStyle`, image stage), the official CycleGAN test pipeline
(``test.py --model test --no_dropout``, reference/cyclegan.md section 5) followed by the classifier's own
evaluation of the PNGs it writes:

* the whole decoded RGB image is squashed to 256x256 with PIL bicubic (the aspect ratio is not kept), as the
  official ``Resize([256, 256], BICUBIC)`` on a PIL image (:func:`official_input`; in the loader's workers);
* ``ToTensor`` and ``Normalize(0.5, 0.5)``: ``(x - 0.5) / 0.5``; the generator, batched on the device, fp32
  (every input is 256x256, so they batch);
* the output **truncated** to 8 bits as ``tensor2im`` does before the PNG is saved:
  ``uint8((y + 1) / 2 * 255)`` (``floor``, not rounding);
* then the engine applies the model's own resize and crop to that 256x256 image, as to an image file.

``monet-official`` is Table 1's Monet row (``--transforms all``): the authors made their Monet set with the
official CycleGAN code and pretrained model, whose test tool writes exactly these images. Both variants are
cached (the crop's or the squashed image's bytes as key) and run the same generator file: ``--transform-weights
monet=PATH`` serves ``monet`` and ``monet-official``. :func:`stylize_official` (one PIL image) and
:func:`stylize_folder` (a stylized copy of a folder, as the tool would write it) are the same pipeline.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision.transforms.functional import pil_to_tensor
from tqdm import tqdm

from ..env import resolve_device
from ..files import atomic_write
from ..hub import WeightsError, cache_path, cached_download, file_sha256, read_state_dict
from ..options import option
from ..stylecache import StyleCache
from ._base import Shift, TransformError, check_images, register_transform
from ._stylize import cached_apply, check_finite_output, check_layout, crop_keys, pad_to_multiple, progress_bar

__all__ = [
    "OFFICIAL_SIZE",
    "STYLES",
    "CycleGANStyle",
    "OfficialCycleGANStyle",
    "ResnetBlock",
    "ResnetGenerator",
    "drop_legacy_instance_norm_stats",
    "load_generator",
    "official_input",
    "official_url",
    "stylize",
    "stylize_folder",
    "stylize_official",
]

# Official file names; the URL is URL_TEMPLATE with the file name (plain http, as the official script uses).
URL_TEMPLATE = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{file}"


@dataclass(frozen=True)
class StyleInfo:
    """One published CycleGAN photo-to-painting generator."""

    name: str  # registry name
    label: str  # display label
    file: str  # official file name, also its name in the torch hub cache
    painter: str  # what it imitates, for the description


STYLES: dict[str, StyleInfo] = {
    s.name: s
    for s in (
        StyleInfo("monet", "Monet", "style_monet.pth", "Claude Monet's paintings"),
        StyleInfo("cezanne", "Cézanne", "style_cezanne.pth", "Paul Cézanne's paintings"),
        StyleInfo("ukiyoe", "Ukiyo-e", "style_ukiyoe.pth", "Ukiyo-e prints"),
        StyleInfo("vangogh", "Van Gogh", "style_vangogh.pth", "Vincent van Gogh's paintings"),
    )
}

ARCHITECTURE = (
    "resnet_9blocks, ngf 64, InstanceNorm (no affine, no running stats), reflection padding, no dropout, tanh"
)
VARIANT = "crop-round-v1"  # cache namespace suffix; change it (and Shift.version) whenever the outputs change
OFFICIAL_VARIANT = "official-floor-v1"  # the same for the official pipeline
OFFICIAL_SIZE = 256  # the official test options: load_size = crop_size = 256, preprocess resize_and_crop
_GENERATOR_BATCH = {"cpu": 1, "cuda": 16}  # CPU: batching is slower per image (reference/cyclegan.md, sec. 6)


def official_url(style: str) -> str:
    """The official download URL of a style's generator."""
    return URL_TEMPLATE.format(file=STYLES[style].file)


# --- the generator (official names and keys) ----------------------------------------------------------------


class ResnetBlock(nn.Module):
    """``x + conv_block(x)``: reflect-pad, 3x3 conv, IN, ReLU, reflect-pad, 3x3 conv, IN (no ReLU after the sum)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetGenerator(nn.Module):
    """The official CycleGAN ``ResnetGenerator`` (test configuration): [-1, 1] images in, [-1, 1] out.

    ``model`` is the official ``nn.Sequential`` whose indices make up the 48 ``state_dict`` keys
    (``model.1.weight`` ... ``model.26.bias``).
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), _norm(ngf), nn.ReLU(True)
        ]
        for i in range(2):  # downsampling
            mult = 2**i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True), _norm(ngf * mult * 2),
                       nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):  # upsampling
            mult = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=True), _norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def drop_legacy_instance_norm_stats(state_dict: Mapping[str, Any], model: nn.Module) -> OrderedDict[str, Any]:
    """The official loader's fix for pre-0.4 files: drop InstanceNorm running stats the model does not hold.

    For every key owned by an InstanceNorm layer, ``running_mean``/``running_var`` are dropped when the layer
    has no such buffer, and ``num_batches_tracked`` always; every other key is kept (so the strict load that
    follows still reports any genuine mismatch).
    """
    kept: OrderedDict[str, Any] = OrderedDict()
    for key, value in state_dict.items():
        *path, leaf = key.split(".")
        owner: nn.Module | None = model
        for part in path:
            owner = getattr(owner, part, None) if isinstance(owner, nn.Module) else None
        if isinstance(owner, nn.modules.instancenorm._InstanceNorm):
            if leaf == "num_batches_tracked":
                continue
            if leaf in ("running_mean", "running_var") and getattr(owner, leaf, None) is None:
                continue
        kept[key] = value
    return kept


def load_generator(path: str | os.PathLike[str]) -> ResnetGenerator:
    """Build the generator and load an official-layout file strictly (48 keys, or 117 with the legacy IN stats).

    Raises:
        TransformError: the file is unreadable or does not fit the architecture (missing, unexpected and
            mis-shaped keys are listed).
    """
    path = Path(path)
    generator = ResnetGenerator()
    try:
        state = drop_legacy_instance_norm_stats(read_state_dict(path), generator)
    except WeightsError as e:
        raise TransformError(f"{e} (expected the official CycleGAN style_<name>.pth generator)") from e
    check_layout(state, generator, path, f"the CycleGAN generator ({ARCHITECTURE})",
                 "Expected an official style_<name>.pth file (48 keys model.1.weight ... model.26.bias, plus optional "
                 "legacy InstanceNorm running stats). Generators trained with dropout (keys conv_block.6.*) or another "
                 "--netG/--ngf are not this architecture.")
    generator.load_state_dict(state, strict=True)
    return generator.eval().requires_grad_(False)


# --- the functional layer -----------------------------------------------------------------------------------


def _pad_for_generator(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Reflection-pad H and W, centred, to a multiple of 4 (the two stride-2 stages), at least 8."""
    h, w = x.shape[-2:]
    if min(h, w) < 5:
        raise TransformError(
            f"Expected images of at least 5x5 pixels for the CycleGAN generator (two stride-2 stages), but got {h}x{w}."
        )
    return pad_to_multiple(x, 4, 8)


def stylize(generator: nn.Module, images: torch.Tensor, *, rounding: str = "round") -> torch.Tensor:
    """The generator on a float ``[B, 3, H, W]`` batch in [0, 1]; returns the 8-bit result as uint8.

    Input goes in as ``(x - 0.5) / 0.5``; the output ``y`` becomes ``(y + 1) / 2 * 255``, rounded
    (``rounding="round"``, this project's protocol) or truncated (``"floor"``, the official tool's
    ``tensor2im``), in fp32 with autocast off. Any H, W >= 5: non-multiples of 4 are reflection-padded
    (centred) and the output cropped back, so the result has the input's size.
    """
    if rounding not in ("round", "floor"):
        raise ValueError(f"Expected rounding to be 'round' or 'floor', but got {rounding!r}.")
    h, w = images.shape[-2:]
    with torch.autocast(images.device.type, enabled=False):
        x, (left, _, top, _) = _pad_for_generator((images.float() - 0.5) / 0.5)
        y = generator(x)[..., top:top + h, left:left + w]
        check_finite_output(y, "the CycleGAN generator")
        scaled = (y + 1) / 2.0 * 255.0  # the official float32 arithmetic, in its order
    scaled = scaled.round() if rounding == "round" else scaled.floor()
    return scaled.clamp_(0, 255).to(torch.uint8)


def _generator_batch_size(device: torch.device) -> int:
    return _GENERATOR_BATCH.get(device.type, 4)


def official_input(image: Image.Image) -> Image.Image:
    """The official test loader's input: RGB, squashed to 256x256 with PIL bicubic (the aspect ratio is not kept).

    The official ``Resize([256, 256], BICUBIC)`` on a PIL image is PIL's own ``resize`` (bit-identical).

    Example:
        >>> official_input(Image.new("L", (500, 375))).size
        (256, 256)
    """
    from ..data import to_rgb  # the loader's conversion: a 16-bit image is scaled to 8 bits, not clipped to white

    return to_rgb(image).resize((OFFICIAL_SIZE, OFFICIAL_SIZE), Image.Resampling.BICUBIC)


def stylize_official(image: Image.Image, generator: nn.Module, *, device: str | torch.device = "cpu") -> Image.Image:
    """The official CycleGAN test pipeline on one image: the 256x256 8-bit PNG content the tool would save.

    :func:`official_input`, ``ToTensor``, ``Normalize(0.5, 0.5)``, generator, ``(y + 1) / 2 * 255`` truncated to uint8
    (:func:`stylize` with ``rounding="floor"``): exactly what the ``*-official`` shifts compute before the model's own
    resize and crop, which the evaluation applies as to any image file.
    """
    x = pil_to_tensor(official_input(image))[None].to(device).float().div(255)
    generator = generator.to(device)
    with torch.inference_mode():
        out = stylize(generator, x, rounding="floor")[0]
    return Image.fromarray(out.permute(1, 2, 0).cpu().numpy(), "RGB")


def stylize_folder(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], style: str = "monet", *,
    weights: str | os.PathLike[str] | None = None, labels_file: str | os.PathLike[str] | None = None,
    limit: int | None = None, device: str = "auto", progress: bool = True,
) -> Path:
    """Write the official-pipeline stylization of a validation folder, as the official tool would (PNG files).

    Every image ``src/<rel>.<ext>`` becomes ``dst/<rel>.png`` (256x256): the ``<style>-official`` shift's output
    (:func:`stylize_official`), read from or added to the stylized-image cache. For a flat folder a ``val.txt``
    (``filename label_index``) is written beside the images; class sub-folders keep their wnid names. Existing
    outputs are kept (an interrupted run continues). Returns ``dst``. ``robust-eval --transforms <style>-official``
    evaluates the same images without writing a copy.
    """
    from ..data import ImageNetVal, load_rgb  # the transforms package must not import data at module level

    shift = OfficialCycleGANStyle(style, weights)
    shift.prepare(progress=progress)  # a download's bar; single images show no generator bar
    dev = resolve_device(device)
    dataset = ImageNetVal(src, labels_file=labels_file, limit=limit)
    dst = Path(dst)
    lines = []
    bar = tqdm(dataset.samples, desc=f"{shift.label} (official pipeline)", unit="img", disable=not progress)
    for rel, label in bar:
        out = dst / Path(rel).with_suffix(".png")
        lines.append(f"{out.name} {label}")
        if out.is_file():
            continue
        x = shift.prepare_image(load_rgb(dataset.root / rel))[None].to(dev).float().div(255)
        pixels = shift.apply_batch(x, [rel])[0].mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        with atomic_write(out, "wb") as f:
            Image.fromarray(pixels, "RGB").save(f, format="PNG")
    if dataset.layout == "flat":
        (dst / "val.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


# --- the shift ----------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    generator: ResnetGenerator
    sha256: str
    location: str
    source: str  # "path" (--transform-weights), "hub cache" or "download"


class CycleGANStyle(Shift):
    """A CycleGAN photo-to-painting generator applied to the crop, output rounded to 8 bits, cached on disk.

    Args:
        style: ``monet``, ``cezanne``, ``ukiyoe`` or ``vangogh``.
        weights: a local generator file or URL; default: the torch hub cache copy of the official file if
            present, else a download from the official URL into that cache.
        url: the official URL (override for mirrors and tests).
        cache: keep stylized crops on disk (:mod:`robustbench_ibn.stylecache`) and reuse them.
        cache_dir: cache root (default ``$ROBUSTBENCH_IBN_CACHE`` or ``~/.cache/robustbench_ibn``).
        generator_batch_size: images per generator call (default: 1 on CPU, 16 on CUDA).

    Weights are found and loaded by :meth:`prepare` (the runner calls it at set-up, before any model is
    built or image decoded); :meth:`definition` then records the file's sha256.
    """

    version = 1
    variant = VARIANT  # the cache namespace's suffix
    rounding = "round"  # how stylize() quantizes the output
    suffix = ""  # registry name: the style's name plus this

    def __init__(
        self, style: str = "monet", weights: str | os.PathLike[str] | None = None, *, url: str | None = None,
        cache: bool = True, cache_dir: str | os.PathLike[str] | None = None, generator_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise TransformError(f"Expected style to be one of {sorted(STYLES)}, but got {style!r}.")
        if generator_batch_size is not None and generator_batch_size < 1:
            raise TransformError(f"Expected generator_batch_size >= 1, but got {generator_batch_size}.")
        self.style = STYLES[style]
        self.name = style + self.suffix
        self.label = self._label()
        self.weights = os.fspath(weights) if weights is not None else None
        self.url = url or official_url(style)
        self.use_cache = cache
        self.cache_dir = cache_dir
        self.generator_batch_size = generator_batch_size
        self.progress = False
        self.generated = 0  # images run through the generator by this instance (cache misses included)
        self.cache_hits = 0
        self._loaded: _Loaded | None = None
        self._cache: StyleCache | None = None

    # -- description -------------------------------------------------------------------------------------
    def _label(self) -> str:
        return f"{self.style.label} (crop)"  # the plain painter's name is the official pipeline's (Table 1's Monet)

    def params(self) -> dict[str, Any]:
        loaded = self._loaded
        return {
            "style": self.style.file.removesuffix(".pth"),
            "generator": ARCHITECTURE,
            "generator_sha256": loaded.sha256 if loaded else None,
            "input": "the model's crop, (x - 0.5) / 0.5 in [-1, 1]",
            "output": "(y + 1) / 2, rounded to 8 bits",
            "odd_sizes": "reflection-padded (centred) to a multiple of 4, output cropped back",
            "precision": "fp32",
        }

    def describe(self) -> str:
        return (f"CycleGAN photo-to-{self.style.label} generator (official style_{self.name}) on the crop, "
                "output rounded to 8 bits")

    def definition(self) -> dict[str, Any]:
        out = super().definition()
        loaded = self._loaded
        out["weights"] = {"official_url": self.url, "location": loaded.location if loaded else None,
                          "source": loaded.source if loaded else None, "sha256": loaded.sha256 if loaded else None}
        return out

    # -- set-up --------------------------------------------------------------------------------------------
    def prepare(self, *, progress: bool = True) -> None:
        """Find, (download,) hash and load the generator; raise TransformError saying what to do if impossible."""
        self.progress = progress
        if self._loaded is not None:
            return
        path, source = self._locate(progress)
        sha = file_sha256(path)
        self._loaded = _Loaded(load_generator(path), sha, str(Path(path).resolve()), source)
        if self.use_cache:
            namespace = f"{self.style.name}-{sha[:16]}-{self.variant}"
            meta = {"style": self.style.name, "shift": self.name, "generator_sha256": sha,
                    "weights_location": self._loaded.location, "variant": self.variant,
                    "shift_version": self.version, "description": self.describe(), "params": self.params()}
            self._cache = StyleCache(namespace, meta, self.cache_dir)

    def _locate(self, progress: bool) -> tuple[Path, str]:
        # The style's own key serves both variants (register_transform(weights_key=...)), so the flag names it.
        flag = option("transform_weights", (self.style.name, f"/path/to/{self.style.file}"))
        if self.weights is not None and not self.weights.startswith(("http://", "https://")):
            path = Path(self.weights).expanduser()
            if not path.is_file():
                raise TransformError(f"{option('transform_weights', (self.name, self.weights))}: no such file "
                                     f"({path.absolute()}). "
                                     f"Expected the {self.style.file} generator (official URL {self.url}).")
            return path, "path"
        url = self.weights or self.url
        # The official file keeps its own name in the hub cache (a copy put there by hand is found); any other URL
        # is cached under its URL, so another file of the same name never passes for it.
        cache_name = self.style.file if url == self.url else None
        hub_file = cache_path(url, cache_name=cache_name)
        source = "hub cache" if hub_file.is_file() else "download"
        try:
            return cached_download(url, None, progress=progress, cache_name=cache_name), source
        except WeightsError as e:
            raise TransformError(
                f"the {self.label} shift needs the CycleGAN generator weights {self.style.file}, which are not on this "
                f"machine (looked for {hub_file}) and could not be downloaded from {url} ({e.__cause__ or e}). "
                f"Download that file elsewhere and pass {flag} (or put it at {hub_file})."
            ) from e

    @property
    def generator(self) -> ResnetGenerator:
        if self._loaded is None:
            self.prepare(progress=self.progress)
        assert self._loaded is not None
        return self._loaded.generator

    # -- application ---------------------------------------------------------------------------------------
    def _generate(self, images: torch.Tensor) -> torch.Tensor:
        """Fresh uint8 stylization of a batch, in generator-sized chunks, with a progress bar."""
        generator = self.generator
        if next(generator.parameters()).device != images.device:
            generator.to(images.device)
        step = self.generator_batch_size or _generator_batch_size(images.device)
        out = []
        with torch.inference_mode(), progress_bar(self.label, len(images), self.progress) as bar:
            for chunk in images.split(step):
                out.append(stylize(generator, chunk, rounding=self.rounding))
                bar.update(len(chunk))
        self.generated += len(images)
        return torch.cat(out)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Freshly generated (never cached) stylization: float, 8-bit values, same shape/device."""
        check_images(images, self.label)
        return self._generate(images).to(images.dtype).div_(255)

    def apply_batch(self, images: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        """The stylization of a batch, read from the cache where present; misses are generated and stored.

        The cache key is the input's content (:func:`~robustbench_ibn.stylecache.content_key` of its 8-bit pixels:
        the crop, or the squashed image of the official pipeline), not ``keys``; the paths are only kept as a note
        inside each entry.
        """
        check_images(images, self.label)
        if not self.use_cache:
            return self(images)
        if self._cache is None:
            self.prepare(progress=self.progress)
        assert self._cache is not None
        out, hits = cached_apply(
            self._cache, images, crop_keys(images),
            lambda misses: self._generate(images[torch.tensor(misses, device=images.device)]),
            [str(keys[i]) if i < len(keys) else "" for i in range(len(images))],
        )
        self.cache_hits += hits
        return out.to(images.device).to(images.dtype).div_(255)


class OfficialCycleGANStyle(CycleGANStyle):
    """The official CycleGAN test pipeline on the whole image (image stage): squashed to 256x256, generator, 8 bits
    truncated as the tool's PNGs; the engine then applies the model's own resize and crop.

    Registered as ``<style>-official`` (``monet-official`` is Table 1's Monet row, ``--transforms all``). Arguments
    as :class:`CycleGANStyle`; the weights are the same file (``--transform-weights monet=PATH`` serves both).
    :meth:`prepare_image` (in the loader's workers) squashes (:func:`official_input`); :meth:`apply_batch` runs the
    generator on the device in batches of 256x256 images and caches its output by the squashed image's bytes.
    """

    stage = "image"
    variant = OFFICIAL_VARIANT
    rounding = "floor"
    suffix = "-official"

    def _label(self) -> str:
        return self.style.label

    def prepare_image(self, image: Image.Image) -> torch.Tensor:
        """The decoded image squashed to 256x256 (:func:`official_input`), uint8 ``[3, 256, 256]``."""
        return pil_to_tensor(official_input(image))

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "pipeline": "the official CycleGAN test pipeline (test.py --model test --no_dropout), then the model's "
                        "eval geometry on its 256x256 output",
            "input": f"the whole decoded image, RGB, squashed to {OFFICIAL_SIZE}x{OFFICIAL_SIZE} (PIL bicubic, aspect "
                     "ratio not kept), (x - 0.5) / 0.5 in [-1, 1]",
            "output": "uint8((y + 1) / 2 * 255), truncated as the official tensor2im (floor)",
        }

    def describe(self) -> str:
        row = "; Table 1's Monet row (--transforms all)" if self.style.name == "monet" else ""
        return (f"CycleGAN photo-to-{self.style.label} generator (official style_{self.style.name}) in the official "
                f"test pipeline: the whole image squashed to {OFFICIAL_SIZE}x{OFFICIAL_SIZE} bicubic, output "
                f"truncated to 8 bits, then the model's resize and crop{row}")


def _register() -> None:
    for style in STYLES:
        for cls in (CycleGANStyle, OfficialCycleGANStyle):

            def build(weights: str | os.PathLike[str] | None = None, *, _style: str = style,
                      _cls: type[CycleGANStyle] = cls, **kwargs: Any) -> Shift:
                return _cls(_style, weights, **kwargs)

            build.__name__ = (style + cls.suffix).replace("-", "_")
            register_transform(style + cls.suffix, weights_key=style if cls.suffix else None)(build)


_register()

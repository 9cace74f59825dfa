"""Synthetic natural-shift trees in the official layouts, built from the shared ImageNet sample images.

    python examples/synthetic_domains.py OUT [SHARED_VAL]

makes, under OUT, a small ImageNet val and one tree per dataset kind, each in its release's layout, of real
ImageNet photos (symlinks to ../shared/data/imagenet-sample/val, no copies): the images are not renditions,
sketches or corruptions, only the folders are the datasets'. They check the pipeline (layouts, labels, reports),
never a model's robustness. docs/natural-shifts.md shows a run on them; the tests build them too.

* ``val/``: 8 classes, 1 image each: the sample's first 6 (4 of them ImageNet-R classes, 1 an ImageNet-A class)
  and its first 2 of ObjectNet's classes, so every reference domain (the val images of a dataset's classes) has
  images;
* ``imagenet-r/``, ``imagenet-a/``: 3 of their 200 wnid folders, 2 images each;
* ``imagenet-sketch/sketch/``, ``stylized-imagenet/val/``, ``folder/``: 3 wnid folders, 1 image each;
* ``imagenetv2-matched-frequency-format-val/``: index folders 0..11 (``10`` and ``11`` sort before ``2`` as
  strings), 1 image each;
* ``objectnet-1.0/images/``: 3 of the 113 overlapping folders (2 images each) and 1 other folder (excluded);
* ``imagenet-c/<corruption>/<severity>/<wnid>/``: gaussian_noise and fog at severities 1 and 2, 3 wnids, each
  file a 224-px JPEG made as ImageNet-C's were (resize 256, centre crop 224, JPEG quality 85) but without the
  corruption; every (corruption, severity) holds other photos, so their errors differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image
from torchvision import transforms as T

from robustbench_ibn.data import imagenet_classes
from robustbench_ibn.datasets.facts import imagenet_a_classes, imagenet_r_classes, objectnet_mapping

SHARED_VAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-sample" / "val"
CORRUPTIONS = ("gaussian_noise", "fog")
SEVERITIES = (1, 2)
OBJECTNET_FOLDERS = ("alarm_clock", "chair", "banana")
OBJECTNET_OTHER = "air_freshener"  # not among the 113 that overlap ImageNet-1k


def _link(folder: Path, images: list[Path]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        (folder / image.name).symlink_to(image)


def _objectnet_wnids() -> set[str]:
    wnids = [wnid for wnid, _ in imagenet_classes()]
    return {wnids[i] for indices in objectnet_mapping().values() for i in indices}


def build(out: str | Path, shared_val: str | Path = SHARED_VAL) -> dict[str, Path]:
    """Build every tree under ``out``; returns kind (``val`` for ImageNet val) -> its folder."""
    out, shared_val = Path(out), Path(shared_val)
    if out.exists() and any(out.iterdir()):  # never mixed with, or written over, what is already there
        raise SystemExit(f"Expected a new or empty folder for the synthetic trees, but {out} holds files: delete it "
                         f"(rm -r {out}) or name another folder.")
    photos = sorted(shared_val.glob("*/*.JPEG"))
    if len(photos) < 100:
        raise SystemExit(f"Expected the 500 shared ImageNet images under {shared_val}, but found {len(photos)}.")
    taken = iter(photos)

    def some(n: int) -> list[Path]:
        return [next(taken) for _ in range(n)]

    roots: dict[str, Path] = {}
    roots["val"] = out / "val"
    class_dirs = sorted(p for p in shared_val.iterdir() if p.is_dir())
    mapped = _objectnet_wnids()
    for class_dir in class_dirs[:6] + [d for d in class_dirs if d.name in mapped][:2]:
        _link(roots["val"] / class_dir.name, sorted(class_dir.glob("*.JPEG"))[:1])
    for kind, classes in (("imagenet-r", imagenet_r_classes()), ("imagenet-a", imagenet_a_classes())):
        roots[kind] = out / kind
        for wnid, _ in classes[:3]:
            _link(roots[kind] / wnid, some(2))
    wnids = [wnid for wnid, _ in imagenet_classes()]
    for kind, inner in (("imagenet-sketch", "sketch"), ("stylized-imagenet", "val"), ("folder", "")):
        roots[kind] = out / kind
        for wnid in wnids[10:13]:
            _link(roots[kind] / inner / wnid, some(1))
    roots["imagenet-v2"] = out / "imagenetv2-matched-frequency-format-val"
    for index in range(12):
        _link(roots["imagenet-v2"] / str(index), some(1))
    roots["objectnet"] = out / "objectnet-1.0"
    for folder in OBJECTNET_FOLDERS:
        assert folder in objectnet_mapping()
        _link(roots["objectnet"] / "images" / folder, some(2))
    _link(roots["objectnet"] / "images" / OBJECTNET_OTHER, some(2))
    roots["imagenet-c"] = out / "imagenet-c"
    crop = T.Compose([T.Resize(256), T.CenterCrop(224)])
    for corruption in CORRUPTIONS:
        for severity in SEVERITIES:
            for wnid in wnids[20:23]:
                folder = roots["imagenet-c"] / corruption / str(severity) / wnid
                folder.mkdir(parents=True)
                source = next(taken)
                crop(Image.open(source).convert("RGB")).save(folder / f"{source.stem}.JPEG", quality=85)
    return roots


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    for kind, root in build(*sys.argv[1:]).items():
        print(f"{kind:18s} {root}")

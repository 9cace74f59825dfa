"""Tests for robustbench_ibn.data: discovery, canonical labels, decoding parity with torchvision, errors, limit.

Discovery tests use empty placeholder files (discovery never decodes); only the parity tests decode real
images from ../shared/data (about 20 decodes in total).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import datasets
from torchvision import transforms as T

from robustbench_ibn.data import DataConfig, DataError, ImageNetVal, imagenet_classes, wnid_to_index

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_VAL = SHARED_DATA / "imagenet-sample" / "val"

# The official IBN-Net eval geometry, written out independently of robustbench_ibn.
REFERENCE = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(224), T.PILToTensor()])


# -- helpers ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared_val() -> Path:
    """The 500 shared ImageNet images; missing data is a failure, never a skip."""
    if not SHARED_VAL.is_dir() or not any(SHARED_VAL.iterdir()):
        pytest.fail(f"shared test images not found: expected the ImageFolder tree {SHARED_VAL} "
                    "(see shared/data/README.md); the data tests need them.")
    return SHARED_VAL


def wnid(i: int) -> str:
    return imagenet_classes()[i][0]


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def pick_images(shared_val: Path) -> list[Path]:
    """Three greyscale images plus the smallest, the largest and three more RGB ones (header reads only)."""
    files = sorted(shared_val.glob("*/*.JPEG"))
    info = {p: (Image.open(p).mode, Image.open(p).size) for p in files}  # lazy open: no decode
    grey = [p for p in files if info[p][0] == "L"]
    rgb = [p for p in files if info[p][0] == "RGB"]
    assert len(grey) >= 3, f"expected greyscale JPEGs among {shared_val}"
    by_area = sorted(rgb, key=lambda p: info[p][1][0] * info[p][1][1])
    chosen = grey[:3] + [by_area[0], by_area[-1]] + [p for p in rgb if p not in (by_area[0], by_area[-1])][:3]
    return sorted(chosen)


def link_tree(dst: Path, files: list[Path]) -> Path:
    """ImageFolder tree of symlinks to ``files`` (which live in <wnid>/ folders)."""
    for f in files:
        (dst / f.parent.name).mkdir(parents=True, exist_ok=True)
        (dst / f.parent.name / f.name).symlink_to(f)
    return dst


# -- canonical index --------------------------------------------------------------------------------
def test_canonical_classes_match_shared_list(shared_val: Path) -> None:
    classes = imagenet_classes()
    assert len(classes) == 1000 and [w for w, _ in classes] == sorted(w for w, _ in classes)
    rows = [line.split("\t") for line in (SHARED_DATA / "imagenet_classes.tsv").read_text().splitlines()[1:]]
    assert classes == [(w, n) for _, w, n in rows]
    assert wnid_to_index()["n01440764"] == 0 and wnid_to_index()[wnid(998)] == 998
    wnid_to_index().clear()  # callers get a copy: the cache must survive this
    assert len(wnid_to_index()) == 1000


# -- decoding parity ---------------------------------------------------------------------------------
def test_default_output_equals_torchvision_imagefolder_bit_for_bit(shared_val: Path, tmp_path: Path) -> None:
    files = pick_images(shared_val)
    root = link_tree(tmp_path / "val", files)
    ours = ImageNetVal(root)
    ref = datasets.ImageFolder(str(root), transform=REFERENCE)
    assert ours.layout == "imagefolder" and len(ours) == len(ref) == len(files)
    index = wnid_to_index()
    for i, (rel, label) in enumerate(ours.samples):
        img, lab = ours[i]
        ref_img, _ = ref[i]
        assert Path(ref.samples[i][0]).relative_to(root).as_posix() == rel
        assert lab == label == index[rel.split("/")[0]]
        assert torch.equal(ours.preprocess(ours.load(i)), img)  # the two steps the image stage splits
        assert img.dtype == torch.uint8 and img.shape == (3, 224, 224)
        assert torch.equal(img, ref_img), f"pixel mismatch for {rel}"


def test_cmyk_jpeg_decodes_like_imagefolder_loader(shared_val: Path, tmp_path: Path) -> None:
    src = pick_images(shared_val)[-1]
    dst = tmp_path / "val" / src.parent.name / "cmyk.JPEG"
    dst.parent.mkdir(parents=True)
    Image.open(src).convert("CMYK").save(dst, "JPEG")
    assert Image.open(dst).mode == "CMYK"
    ds = ImageNetVal(tmp_path / "val")
    img, _ = ds[0]
    assert img.shape == (3, 224, 224) and img.dtype == torch.uint8
    assert torch.equal(img, REFERENCE(datasets.folder.pil_loader(str(dst))))


def test_other_geometry_from_config(shared_val: Path, tmp_path: Path) -> None:
    f = pick_images(shared_val)[0]
    root = link_tree(tmp_path / "val", [f])
    img, _ = ImageNetVal(root, DataConfig(resize=160, crop=128, interpolation="bicubic"))[0]
    ref = T.Compose([T.Resize(160, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(128), T.PILToTensor()])
    assert torch.equal(img, ref(datasets.folder.pil_loader(str(f))))
    with pytest.raises(DataError, match="interpolation"):
        ImageNetVal(root, DataConfig(interpolation="cubic-ish"))


# -- discovery -------------------------------------------------------------------------------------
def test_partial_imagefolder_uses_canonical_indices(tmp_path: Path) -> None:
    for i in (0, 2, 998):
        touch(tmp_path / wnid(i) / f"img_{i}.JPEG")
        touch(tmp_path / wnid(i) / "notes.txt")  # non-images are ignored
    touch(tmp_path / wnid(2) / "nested" / "deep.jpg")  # recursive, like ImageFolder
    touch(tmp_path / wnid(2) / "._img.JPEG")  # macOS AppleDouble debris is ignored
    ds = ImageNetVal(tmp_path)
    assert ds.layout == "imagefolder"
    assert ds.samples == [
        (f"{wnid(0)}/img_0.JPEG", 0),
        (f"{wnid(2)}/img_2.JPEG", 2),
        (f"{wnid(2)}/nested/deep.jpg", 2),
        (f"{wnid(998)}/img_998.JPEG", 998),
    ]
    assert "4 images, 3 classes" in ds.describe()


def test_parent_of_val_is_accepted(tmp_path: Path) -> None:
    touch(tmp_path / "val" / wnid(5) / "a.JPEG")
    (tmp_path / "train").mkdir()
    ds = ImageNetVal(tmp_path)
    assert ds.root == tmp_path / "val" and ds.samples == [(f"{wnid(5)}/a.JPEG", 5)]


def test_flat_layout_with_kaggle_csv(tmp_path: Path) -> None:
    val = tmp_path / "val"
    for k in (1, 2, 3):
        touch(val / f"ILSVRC2012_val_{k:08d}.JPEG")
    # Kaggle keeps the csv above the image folder; the parent is searched.
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        f"ILSVRC2012_val_00000003,{wnid(998)} 1 2 3 4 {wnid(998)} 5 6 7 8\n"
        f"ILSVRC2012_val_00000001,{wnid(65)} 10 20 30 40\n"
        f"ILSVRC2012_val_00000002,{wnid(0)} 1 1 2 2\n"
    )
    ds = ImageNetVal(val)
    assert ds.layout == "flat" and ds.labels_file == tmp_path / "LOC_val_solution.csv"
    assert ds.samples == [("ILSVRC2012_val_00000001.JPEG", 65), ("ILSVRC2012_val_00000002.JPEG", 0),
                          ("ILSVRC2012_val_00000003.JPEG", 998)]
    assert ds.fingerprint()["layout"] == "flat"


def test_flat_layout_with_filename_label_file(tmp_path: Path) -> None:
    for name in ("b.JPEG", "a.jpeg", "c.png"):
        touch(tmp_path / name)
    (tmp_path / "val.txt").write_text("a.jpeg 7\nb.JPEG 999\n\nc.png 0\n")
    ds = ImageNetVal(tmp_path)
    assert ds.samples == [("a.jpeg", 7), ("b.JPEG", 999), ("c.png", 0)]
    # An explicit labels file wins over auto-detection.
    other = touch(tmp_path.parent / f"{tmp_path.name}_labels.txt", b"a.jpeg 1\nb.JPEG 2\nc.png 3\n")
    assert ImageNetVal(tmp_path, labels_file=other).labels == [1, 2, 3]


def test_order_and_fingerprint_are_deterministic(tmp_path: Path) -> None:
    for name in ("z.JPEG", "a.JPEG", "m.JPEG"):
        touch(tmp_path / wnid(3) / name)
    a, b = ImageNetVal(tmp_path), ImageNetVal(tmp_path)
    assert [s for s, _ in a.samples] == sorted(s for s, _ in a.samples)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint()["n"] == 3 and len(a.fingerprint()["sha256"]) == 64


# -- errors ----------------------------------------------------------------------------------------
def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as exc:
        ImageNetVal(tmp_path / "nope")
    assert "nope" in str(exc.value) and "ImageFolder" in str(exc.value) and "flat" in str(exc.value)


def test_empty_folder(tmp_path: Path) -> None:
    touch(tmp_path / "README.md")
    with pytest.raises(DataError, match="no images found") as exc:
        ImageNetVal(tmp_path)
    assert str(tmp_path) in str(exc.value) and "ImageFolder" in str(exc.value) and "flat" in str(exc.value)


def test_unknown_class_folder(tmp_path: Path) -> None:
    touch(tmp_path / wnid(0) / "a.JPEG")
    touch(tmp_path / "cats" / "b.JPEG")
    with pytest.raises(DataError, match="cats"):
        ImageNetVal(tmp_path)


def test_image_missing_from_labels(tmp_path: Path) -> None:
    touch(tmp_path / "a.JPEG")
    touch(tmp_path / "stray.JPEG")
    (tmp_path / "labels.txt").write_text("a.JPEG 1\n")
    with pytest.raises(DataError, match="stray.JPEG") as exc:
        ImageNetVal(tmp_path)
    assert "labels.txt" in str(exc.value)


def test_labels_for_absent_images(tmp_path: Path) -> None:
    touch(tmp_path / "a.JPEG")
    (tmp_path / "val.txt").write_text("a.JPEG 1\ngone1.JPEG 2\ngone2.JPEG 3\n")
    with pytest.raises(DataError, match="2 images that are not") as exc:
        ImageNetVal(tmp_path)
    assert "gone1.JPEG" in str(exc.value)


def test_flat_without_labels_file(tmp_path: Path) -> None:
    touch(tmp_path / "val" / "a.JPEG")
    with pytest.raises(DataError, match="no labels file"):
        ImageNetVal(tmp_path / "val")
    with pytest.raises(DataError, match="missing.txt"):
        ImageNetVal(tmp_path / "val", labels_file=tmp_path / "missing.txt")


def test_bad_label_line(tmp_path: Path) -> None:
    touch(tmp_path / "a.JPEG")
    (tmp_path / "val.txt").write_text("a.JPEG 1000\n")
    with pytest.raises(DataError, match="line 1"):
        ImageNetVal(tmp_path)


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    bad = touch(tmp_path / wnid(1) / "x.JPEG", b"this is not a jpeg" * 10)
    ds = ImageNetVal(tmp_path)
    with pytest.raises(DataError, match="x.JPEG") as exc:
        ds[0]
    assert str(bad.absolute()) in str(exc.value) and "Remove or replace" in str(exc.value)


# -- limit -----------------------------------------------------------------------------------------
def test_limit_is_class_balanced_and_deterministic(tmp_path: Path) -> None:
    for i in (4, 10, 700):
        for k in range(4):
            touch(tmp_path / wnid(i) / f"{k}.JPEG")
    full = ImageNetVal(tmp_path)
    sub = ImageNetVal(tmp_path, limit=6)
    assert len(full) == 12 and len(sub) == 6
    assert sorted(sub.labels) == [4, 4, 10, 10, 700, 700]
    # Ranks 0 and 1 of every class, in path order.
    assert sub.samples == sorted((f"{wnid(i)}/{k}.JPEG", i) for i in (4, 10, 700) for k in (0, 1))
    assert sub.samples == ImageNetVal(tmp_path, limit=6).samples
    assert sub.fingerprint() == ImageNetVal(tmp_path, limit=6).fingerprint()
    # Uneven limit: round-robin in label order.
    assert ImageNetVal(tmp_path, limit=4).labels == [4, 4, 10, 700]
    fps = {ImageNetVal(tmp_path, limit=n).fingerprint()["sha256"] for n in (3, 6)} | {full.fingerprint()["sha256"]}
    assert len(fps) == 3
    assert sub.fingerprint()["limit"] == 6 and sub.fingerprint()["n"] == 6
    assert "limit 6 of 12" in sub.describe()


def test_limit_above_size_is_capped(tmp_path: Path) -> None:
    touch(tmp_path / wnid(0) / "a.JPEG")
    touch(tmp_path / wnid(1) / "b.JPEG")
    ds = ImageNetVal(tmp_path, limit=100)
    assert len(ds) == 2 and ds.limit == 100 and ds.fingerprint()["limit"] == 100
    assert ds.fingerprint()["sha256"] == ImageNetVal(tmp_path).fingerprint()["sha256"]
    assert "all images used" in ds.describe()
    with pytest.raises(DataError, match="limit"):
        ImageNetVal(tmp_path, limit=0)

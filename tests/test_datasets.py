"""Tests for robustbench_ibn.datasets: the shipped label facts, every dataset kind's layout and labels, bad input.

Every tree is built in tmp_path from symlinks to the shared ImageNet images (../shared/data); expected labels
come from the reference files in ../shared/reference/domains, read here independently of the package. Only a
handful of tests decode images (geometry parity with torchvision).
"""

from __future__ import annotations

import doctest
import importlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from robustbench_ibn.corruption import coverage
from robustbench_ibn.data import DataConfig, DataError
from robustbench_ibn.datasets import (
    DATASETS,
    ENTRY_POINT_GROUP,
    DatasetKind,
    ImageNetC,
    create_dataset,
    dataset_kind,
    facts,
    imagenet_c_sources,
    imagenet_c_tree,
    list_datasets,
    locate_wnid_folders,
    matching_kinds,
    objectnet_label_space,
    register_dataset,
)
from robustbench_ibn.labels import ClassSubset

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLE_VAL = SHARED / "data" / "imagenet-sample" / "val"
REFERENCE = SHARED / "reference" / "domains"
VAL_GEOMETRY = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(224),
                          T.PILToTensor()])


# -- reference facts, read independently of the package -------------------------------------------------
def reference_rows(name: str) -> list[list[str]]:
    path = REFERENCE / name
    if not path.is_file():
        pytest.fail(f"Expected the reference file {path} (../shared/reference/domains beside the project root).")
    return [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def imagenet_index() -> dict[str, int]:
    rows = reference_rows("imagenet_1k_wnids.txt")
    assert len(rows) == 1000
    return {wnid: int(i) for i, wnid, _ in rows}


@pytest.fixture(scope="module")
def r_classes() -> list[tuple[str, int]]:
    return [(wnid, int(i)) for _, wnid, i, _ in reference_rows("imagenet_r_wnids.txt")]


@pytest.fixture(scope="module")
def a_classes() -> list[tuple[str, int]]:
    return [(wnid, int(i)) for _, wnid, i, _ in reference_rows("imagenet_a_wnids.txt")]


@pytest.fixture(scope="module")
def objectnet_reference() -> dict:
    return json.loads((REFERENCE / "objectnet_to_imagenet.json").read_text())


@pytest.fixture(scope="module")
def images() -> list[Path]:
    files = sorted(SAMPLE_VAL.glob("*/*.JPEG"))
    if len(files) < 50:
        pytest.fail(f"Expected the 500 shared ImageNet images under {SAMPLE_VAL} (see shared/data/README.md).")
    return files


def build(root: Path, folders: list[str], images: list[Path], per_folder: int = 2) -> Path:
    """``root/<folder>/<k>_<image name>`` symlinks to shared images, ``per_folder`` per folder."""
    k = 0
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for _ in range(per_folder):
            src = images[k % len(images)]
            (root / folder / f"{k}_{src.name}").symlink_to(src)
            k += 1
    return root


# -- the shipped facts equal the reference files ----------------------------------------------------------
def test_shipped_r_and_a_classes_equal_the_reference(r_classes, a_classes, imagenet_index):
    assert list(facts.imagenet_r_classes()) == r_classes and len(r_classes) == 200
    assert list(facts.imagenet_a_classes()) == a_classes and len(a_classes) == 200
    for wnid, index in r_classes + a_classes:
        assert imagenet_index[wnid] == index and 0 <= index < 1000
    assert r_classes != a_classes and len({w for w, _ in r_classes} & {w for w, _ in a_classes}) == 86


def test_shipped_objectnet_mapping_equals_the_reference(objectnet_reference, imagenet_index):
    mapping = facts.objectnet_mapping()
    assert mapping == {k: sorted(v) for k, v in objectnet_reference["mapping"].items()} and len(mapping) == 113
    assert facts.objectnet_classes() == objectnet_reference["all_313_folders_to_label"]
    wnid_of = {i: w for w, i in imagenet_index.items()}
    for folder, wnids in objectnet_reference["mapping_wnids"].items():  # the indices are sorted-wnid indices
        assert sorted(wnid_of[i] for i in mapping[folder]) == sorted(wnids)
    assert len({i for v in mapping.values() for i in v}) == 125


def test_shipped_imagenet_c_constants_equal_the_reference():
    ref = json.loads((REFERENCE / "imagenet_c_constants.json").read_text())
    got = facts.imagenet_c_facts()
    assert got.benchmark == tuple(e["name"] for e in ref["benchmark_corruptions"])
    assert got.extras == tuple(e["name"] for e in ref["extra_corruptions"])
    assert len(got.corruptions) == 19
    assert got.alexnet_err == {e["name"]: e["alexnet_err"] for e in ref["benchmark_corruptions"]}
    assert got.groups == {**{e["name"]: e["group"] for e in ref["benchmark_corruptions"]},
                          **{e["name"]: e["group_by_analogy_not_official"] for e in ref["extra_corruptions"]}}
    assert got.alexnet_clean_err == ref["alexnet_clean_err"] == 0.43478
    assert round(sum(got.alexnet_err.values()) / 15, 6) == ref["mean_of_alexnet_err_15"]
    assert {got.families[c] for c in got.extras} == {"extra"}


def test_shipped_files_name_their_source():
    data = Path(facts.__file__).parent / "data"
    for path in sorted(data.iterdir()):
        if path.suffix == ".json":
            assert next(iter(json.loads(path.read_text()))) == "source", path.name  # the first key
        else:
            assert path.read_text().startswith("# source: "), path.name


def test_reported_numbers_are_the_published_ones():
    preferred = {(r.domain, r.variant, r.metric): r.value for r in facts.reported_results() if r.preferred}
    assert preferred[("imagenet-r", None, "top1_acc")] == 36.17
    assert preferred[("imagenet-v2", "matched-frequency", "top1_acc")] == 63.21
    assert preferred[("objectnet", None, "top1_acc")] == 35.75
    assert preferred[("imagenet-c", None, "mce")] == 76.7
    assert preferred[("imagenet-sketch", None, "top1_acc")] == 24.09
    sources = facts.reported_sources()
    assert all(r.source in sources for r in facts.reported_results())
    assert "8190fe329f5f072a06e3a2aea02bb5dda69aed9f" in sources["hendrycks-robustness"]["citation"]


def test_damaged_package_data_is_refused(monkeypatch):
    text = facts._text("imagenet_r_classes.tsv")
    monkeypatch.setattr(facts, "_text", lambda name: text.replace("n01443537\t1", "n01443537\t2"))
    facts._subset_classes.cache_clear()
    try:
        with pytest.raises(DataError, match="imagenet_r_classes.tsv is damaged"):
            facts.imagenet_r_classes()
    finally:
        monkeypatch.undo()
        facts._subset_classes.cache_clear()


# -- registry ---------------------------------------------------------------------------------------------
def test_registry_lists_every_kind_and_suggests_close_names():
    assert list_datasets() == ["folder", "imagenet-a", "imagenet-c", "imagenet-r", "imagenet-sketch", "imagenet-v2",
                               "objectnet", "stylized-imagenet"]
    assert ENTRY_POINT_GROUP == "robustbench_ibn.datasets"
    with pytest.raises(KeyError, match="Did you mean: imagenet-r"):
        dataset_kind("imagenet_r")
    for kind in list_datasets():
        cls = dataset_kind(kind)
        assert issubclass(cls, DatasetKind) and cls.kind == kind and cls.title and cls.layout_help


def test_register_dataset_refuses_duplicates_and_non_kinds():
    with DATASETS.snapshot():
        with pytest.raises(ValueError, match="already registered"):
            @register_dataset
            class Again(DatasetKind):
                kind, title, layout_help = "imagenet-r", "again", "x"
        with pytest.raises(TypeError, match="DatasetKind subclass"):
            register_dataset(dict)

        @register_dataset
        class Mine(DatasetKind):
            kind, title, layout_help = "mine", "Mine", "wnid folders"
            locate = classmethod(locate_wnid_folders)
        assert "mine" in list_datasets()
    assert "mine" not in list_datasets()


def test_create_dataset_refuses_unknown_options(tmp_path, images):
    root = build(tmp_path / "r", ["n01443537"], images)
    with pytest.raises(ValueError, match="subset_policy"):
        create_dataset("imagenet-r", root, policy="full")
    with pytest.raises(DataError, match="Expected subset_policy 'subset' or 'full' for ImageNet-R, but got 'top200'"):
        create_dataset("imagenet-r", root, subset_policy="top200")


# -- wnid-folder kinds --------------------------------------------------------------------------------------
def check_wnid_labels(source, imagenet_index):
    assert source.samples
    for rel, label in source.samples:
        assert label == imagenet_index[Path(rel).parts[0]], rel


def test_folder_kind_labels_every_image_by_its_wnid(tmp_path, images, imagenet_index):
    wnids = ["n01440764", "n01443537", "n04592741", "n15075141", "n02085620"]
    root = build(tmp_path / "mine", wnids, images, per_folder=3)
    source = create_dataset("folder", root, title="my photos")
    check_wnid_labels(source, imagenet_index)
    assert len(source) == 15 and source.title == "my photos" and source.kind == "folder"
    assert create_dataset("folder", root).title == "folder mine"


def test_sketch_accepts_the_release_folder(tmp_path, images, imagenet_index):
    root = tmp_path / "ImageNet-Sketch"
    build(root / "sketch", ["n01440764", "n01530575", "n03000134"], images)
    source = create_dataset("imagenet-sketch", root)
    assert source.root == root / "sketch" and len(source) == 6
    check_wnid_labels(source, imagenet_index)


def test_stylized_reads_val_with_the_val_geometry(tmp_path, images, imagenet_index):
    root = tmp_path / "sin"
    build(root / "val", ["n01440764", "n01484850"], images)
    build(root / "train", ["n01440764"], images)
    source = create_dataset("stylized-imagenet", root)
    assert source.root == root / "val" and len(source) == 4
    check_wnid_labels(source, imagenet_index)
    x, y = source[0]
    assert torch.equal(x, VAL_GEOMETRY(Image.open(source.root / source.samples[0][0]).convert("RGB")))
    assert y == source.samples[0][1]


# -- ImageNet-R / -A ----------------------------------------------------------------------------------------
def test_imagenet_r_labels_are_canonical_indices_in_the_200_class_space(tmp_path, images, r_classes):
    chosen = r_classes[::17]  # 12 classes spread over the list
    root = build(tmp_path / "imagenet-r", [w for w, _ in chosen], images)
    source = create_dataset("imagenet-r", root)
    expected = dict(r_classes)
    for rel, label in source.samples:
        assert label == expected[Path(rel).parts[0]], rel
    assert isinstance(source.label_space, ClassSubset) and source.label_space.policy == "subset"
    assert source.label_space.columns().tolist() == sorted(i for _, i in r_classes)
    assert source.fingerprint()["label_policy"] == "subset"
    assert "imagenet-r-200 (prediction over its 200 classes' logits)" in source.describe()
    full = create_dataset("imagenet-r", root, subset_policy="full")
    assert full.fingerprint()["label_policy"] == "full" and full.samples == source.samples


def test_imagenet_a_has_its_own_classes(tmp_path, images, a_classes, r_classes):
    only_a = [w for w, _ in a_classes if w not in dict(r_classes)][:3]
    root = build(tmp_path / "imagenet-a", only_a, images)
    source = create_dataset("imagenet-a", root)
    for rel, label in source.samples:
        assert label == dict(a_classes)[Path(rel).parts[0]]
    with pytest.raises(DataError, match="not among the 200 ImageNet-R classes") as err:
        create_dataset("imagenet-r", root)
    assert "looks like an ImageNet-A folder" in str(err.value)


def test_r_a_masked_argmax_differs_from_the_1000_way_answer(r_classes):
    """Logits whose 1000-way argmax is outside the 200 classes but whose best R class is the label."""
    space = ClassSubset("imagenet-r-200", [i for _, i in r_classes])
    outside = min(set(range(1000)) - {i for _, i in r_classes})
    label = r_classes[5][1]
    logits = torch.zeros(2, 1000)
    logits[0, outside], logits[0, label] = 9.0, 5.0  # image 0: right only over the 200 columns
    logits[1, label], logits[1, r_classes[7][1]] = 1.0, 2.0  # image 1: wrong either way
    labels = np.array([label, label])
    subset_top1 = space.restrict(logits).topk(5).indices.numpy()
    full_top1 = logits.topk(5).indices.numpy()
    assert subset_top1[0, 0] == label and full_top1[0, 0] == outside
    assert space.correct(subset_top1, labels)[:, 0].tolist() == [True, False]
    full_space = ClassSubset("imagenet-r-200", [i for _, i in r_classes], policy="full")
    assert torch.equal(full_space.restrict(logits), logits)
    assert full_space.correct(full_top1, labels)[:, 0].tolist() == [False, False]


def test_r_folder_with_the_1000_classes_is_refused(tmp_path, images, imagenet_index):
    root = build(tmp_path / "val", sorted(imagenet_index), images, per_folder=1)
    with pytest.raises(DataError, match=r"1000 wnid folders are not among the 200 ImageNet-R classes.*With 1000 "
                                        r"ImageNet-1k classes it is an ImageNet-1k folder"):
        create_dataset("imagenet-r", root)


def test_v2_folder_given_as_imagenet_r_names_the_right_kind(tmp_path, images):
    root = build(tmp_path / "imagenetv2-matched-frequency-format-val", [str(i) for i in range(12)], images, 1)
    with pytest.raises(DataError) as err:
        create_dataset("imagenet-r", root)
    assert str(err.value).startswith(f"{root} looks like an ImageNet-V2 folder (folders 0..999 named by class index, "
                                     f"or wnid folders), not ImageNet-R (the 200 ImageNet-R wnid folders, or some of "
                                     f"them); use --domain imagenet-v2={root}.")
    assert matching_kinds(root) == ["imagenet-v2"]


# -- ImageNet-V2 --------------------------------------------------------------------------------------------
V2_INDICES = [0, 1, 2, 3, 9, 10, 11, 19, 20, 100, 101, 110, 200, 998, 999]


def test_v2_index_folders_are_labelled_by_number_not_string_order(tmp_path, images):
    root = build(tmp_path / "imagenetv2-matched-frequency-format-val", [str(i) for i in V2_INDICES], images)
    source = create_dataset("imagenet-v2", root)
    for rel, label in source.samples:
        assert label == int(Path(rel).parts[0]), rel
    assert sorted({label for _, label in source.samples}) == V2_INDICES
    folder_labels = {Path(p).parent.name: y for p, y in tv_datasets.ImageFolder(str(root)).samples}
    assert sum(int(name) != y for name, y in folder_labels.items()) >= 10  # what ImageFolder would have got wrong
    assert source.layout == "index-folders" and source.title == "ImageNet-V2 matched-frequency"
    assert source.fingerprint()["options"] == {"variant": "matched-frequency"}
    assert "variant matched-frequency" in source.describe()


@pytest.mark.parametrize("name, variant", [("imagenetv2-threshold0.7-format-val", "threshold0.7"),
                                           ("imagenetv2-top-images-format-val", "top-images"),
                                           ("imagenetv2-b-33", "matched-frequency")])
def test_v2_variant_is_read_from_the_folder_name(tmp_path, images, name, variant):
    root = build(tmp_path / name, ["0", "10"], images, 1)
    assert create_dataset("imagenet-v2", root).options["variant"] == variant


def test_v2_variant_option_unknown_and_conflicts(tmp_path, images):
    neutral = build(tmp_path / "v2", ["0", "10"], images, 1)
    source = create_dataset("imagenet-v2", neutral)
    assert source.options["variant"] is None and "variant unknown" in source.describe()
    assert create_dataset("imagenet-v2", neutral, variant="top-images").options["variant"] == "top-images"
    with pytest.raises(DataError, match="Expected an ImageNet-V2 variant"):
        create_dataset("imagenet-v2", neutral, variant="matched")
    named = build(tmp_path / "imagenetv2-top-images-format-val", ["0"], images, 1)
    with pytest.raises(DataError, match="named as the ImageNet-V2 top-images variant"):
        create_dataset("imagenet-v2", named, variant="threshold0.7")


def test_v2_zero_padded_and_wnid_folders(tmp_path, images, imagenet_index):
    padded = build(tmp_path / "padded", ["0000", "0010", "0999"], images, 1)
    assert sorted(label for _, label in create_dataset("imagenet-v2", padded).samples) == [0, 10, 999]
    wnids = build(tmp_path / "wnids", ["n01440764", "n15075141"], images, 1)
    source = create_dataset("imagenet-v2", wnids)
    check_wnid_labels(source, imagenet_index)
    assert source.layout == "imagefolder"


@pytest.mark.parametrize("folders, match", [(["0", "7", "007"], "name the same class index"),
                                            (["0", "1000"], "not class indices 0..999"),
                                            (["0", "n01440764"], "not class indices 0..999")])
def test_v2_bad_folders(tmp_path, images, folders, match):
    root = build(tmp_path / "v2", folders, images, 1)
    with pytest.raises(DataError, match=match):
        create_dataset("imagenet-v2", root)


# -- ObjectNet ------------------------------------------------------------------------------------------------
OBJECTNET_OVERLAP = ["alarm_clock", "banana", "chair", "full_sized_towel", "bicycle", "helmet", "mug"]
OBJECTNET_OTHER = ["air_freshener", "baking_sheet"]


@pytest.fixture
def objectnet_root(tmp_path, images) -> Path:
    root = tmp_path / "objectnet-1.0"
    build(root / "images", OBJECTNET_OVERLAP, images, per_folder=2)
    build(root / "images", OBJECTNET_OTHER, images[100:], per_folder=3)
    (root / "mappings").mkdir()
    return root


def test_objectnet_labels_are_keyed_by_folder_name(objectnet_root, objectnet_reference):
    source = create_dataset("objectnet", objectnet_root)
    assert source.root == objectnet_root / "images" and len(source) == 2 * len(OBJECTNET_OVERLAP)
    space = source.label_space
    for rel, label in source.samples:
        folder = Path(rel).parts[0]
        assert space.classes[label] == folder, rel
        assert space.mapping[folder] == sorted(objectnet_reference["mapping"][folder])
    assert {Path(rel).parts[0] for rel, _ in source.samples} == set(OBJECTNET_OVERLAP)  # others excluded
    assert source.excluded == {"air_freshener": 3, "baking_sheet": 3}
    assert ("accuracy over the 113 overlapping classes; 6 images in 2 of the 200 other classes excluded"
            in source.describe())
    assert source.fingerprint()["excluded_images"] == 6
    # The pitfall: "Bath towel" (official id 9) lives in full_sized_towel; the label follows the folder.
    towel = space.classes.index("full_sized_towel")
    assert objectnet_reference["official_objectnet_id"]["full_sized_towel"] == 9 and towel != 9


def test_objectnet_scoring_many_to_one_on_crafted_predictions():
    space = objectnet_label_space()
    chair, clock = space.classes.index("chair"), space.classes.index("alarm_clock")
    assert space.mapping["chair"] == [423, 559, 765] and space.mapping["alarm_clock"] == [409, 530]
    predictions = np.array([[765, 0, 0], [423, 0, 0], [409, 0, 0], [530, 0, 0], [0, 559, 0], [-1, -1, -1]])
    labels = np.array([chair, chair, chair, clock, chair, chair])
    assert space.correct(predictions, labels).tolist() == [
        [True, False, False], [True, False, False], [False, False, False], [True, False, False],
        [False, True, False], [False, False, False]]
    # The default policy predicts over the 125 mapped columns: an unmapped 1000-way argmax gives way.
    logits = torch.zeros(1, 1000)
    logits[0, 0], logits[0, 559] = 9.0, 3.0
    assert space.restrict(logits).argmax().item() == 559
    full = objectnet_label_space("full")
    assert full.restrict(logits).argmax().item() == 0
    assert full.correct(np.array([[0]]), np.array([chair])).tolist() == [[False]]


def test_objectnet_border_crop_before_the_model_geometry(objectnet_root):
    source = create_dataset("objectnet", objectnet_root)
    path = source.root / source.samples[0][0]
    image = Image.open(path).convert("RGB")
    w, h = image.size
    expected = VAL_GEOMETRY(image.crop((2, 2, w - 2, h - 2)))
    assert torch.equal(source[0][0], expected)
    assert not torch.equal(source[0][0], VAL_GEOMETRY(image))
    assert "2-px border crop + resize 256 bilinear + centre crop 224" in source.describe()


def test_objectnet_bad_folders_and_no_overlapping_images(tmp_path, images):
    bad = build(tmp_path / "bad", ["alarm_clock", "alarm clock", "n01440764"], images, 1)
    with pytest.raises(DataError, match=r"2 of its 3 folders are not ObjectNet classes \(alarm clock, n01440764\) "
                                        r"\(1 of them named by ImageNet wnid\)"):
        create_dataset("objectnet", bad)
    others = build(tmp_path / "others", OBJECTNET_OTHER, images, 1)
    with pytest.raises(DataError, match="empty domain"):
        create_dataset("objectnet", others)


# -- ImageNet-C -------------------------------------------------------------------------------------------------
C_WNIDS = ["n01440764", "n01484850", "n01514859", "n15075141"]


def make_c_tree(root: Path, images: list[Path], corruptions=("gaussian_noise", "fog"), severities=(1, 2),
                family: bool = False) -> Path:
    """A tree of 224-px JPEGs (val -> resize 256 -> crop 224, like ImageNet-C's files, without a corruption)."""
    groups = facts.imagenet_c_facts().families
    files = {}
    for k, wnid in enumerate(C_WNIDS):
        crop = T.Compose([T.Resize(256), T.CenterCrop(224)])(Image.open(images[k]).convert("RGB"))
        files[wnid] = root.parent / f"{root.name}-src" / f"ILSVRC2012_val_{k:08d}.JPEG"
        files[wnid].parent.mkdir(parents=True, exist_ok=True)
        crop.save(files[wnid], quality=85)
    for c in corruptions:
        for s in severities:
            leaf = root / (groups[c] if family else "") / c / str(s)
            for wnid, src in files.items():
                (leaf / wnid).mkdir(parents=True)
                (leaf / wnid / src.name).symlink_to(src)
    return root


def test_imagenet_c_tree_two_corruptions_two_severities(tmp_path, images, imagenet_index):
    root = make_c_tree(tmp_path / "imagenet-c", images)
    tree = imagenet_c_tree(root)
    assert list(tree) == [("gaussian_noise", 1), ("gaussian_noise", 2), ("fog", 1), ("fog", 2)]
    assert tree[("fog", 2)] == root / "fog" / "2"
    assert coverage(tree).summary().startswith(
        "2 of 15 benchmark corruptions, severities 1-2 only: missing shot_noise, impulse_noise, defocus_blur, ")
    sources = imagenet_c_sources(root)
    assert list(sources) == list(tree)
    for (c, s), source in sources.items():
        check_wnid_labels(source, imagenet_index)
        assert source.title == f"ImageNet-C {c} {s}" and source.options == {"corruption": c, "severity": s,
                                                                             "upsample": False}
        assert source.fingerprint()["options"]["corruption"] == c
    assert len({str(s.fingerprint()) for s in sources.values()}) == 4  # same files, four domains
    assert dataset_kind("imagenet-c").recognize(root) is None
    assert dataset_kind("imagenet-c").recognize(root / "fog" / "1") is None


def test_imagenet_c_family_level_and_one_corruption_folder(tmp_path, images):
    root = make_c_tree(tmp_path / "imagenet-c", images, family=True)
    assert imagenet_c_tree(root)[("fog", 1)] == root / "weather" / "fog" / "1"
    assert list(imagenet_c_tree(root / "noise" / "gaussian_noise")) == [("gaussian_noise", 1), ("gaussian_noise", 2)]
    source = create_dataset("imagenet-c", root, corruption="gaussian_noise", severity=2)
    assert source.root == root / "noise" / "gaussian_noise" / "2" and len(source) == len(C_WNIDS)


def test_imagenet_c_preprocessing_is_a_centre_crop_without_resize(tmp_path, images):
    root = make_c_tree(tmp_path / "imagenet-c", images, corruptions=("fog",), severities=(3,))
    leaf = root / "fog" / "3"
    source = ImageNetC(leaf)
    file = Image.open(leaf / source.samples[0][0]).convert("RGB")
    assert file.size == (224, 224)
    assert torch.equal(source[0][0], T.PILToTensor()(file))
    small = ImageNetC(leaf, DataConfig(resize=219, crop=192))
    assert torch.equal(small[0][0], T.PILToTensor()(T.CenterCrop(192)(file)))
    assert "no resize (224-px files, the official ImageNet-C test) + centre crop 192" in small.describe()
    with pytest.raises(DataError, match="crop is 288 px but ImageNet-C's files are 224 px"):
        ImageNetC(leaf, DataConfig(resize=320, crop=288))
    big = ImageNetC(leaf, DataConfig(resize=320, crop=288), upsample=True)
    assert torch.equal(big[0][0], T.Compose([T.Resize(288), T.CenterCrop(288), T.PILToTensor()])(file))
    assert "NOT the official ImageNet-C protocol" in big.describe() and big.fingerprint()["options"]["upsample"]


def test_imagenet_c_file_smaller_than_the_crop_is_named(tmp_path, images):
    leaf = tmp_path / "imagenet-c" / "fog" / "1" / "n01440764"
    leaf.mkdir(parents=True)
    Image.new("RGB", (100, 100)).save(leaf / "small.JPEG")
    with pytest.raises(DataError, match=r"small.JPEG is 100x100, smaller than the crop 224"):
        ImageNetC(leaf.parent).load(0)


def test_imagenet_c_limit_picks_the_same_files_everywhere(tmp_path, images):
    sources = imagenet_c_sources(make_c_tree(tmp_path / "c", images), limit=2)
    assert len({tuple(s.samples) for s in sources.values()}) == 1 and all(len(s) == 2 for s in sources.values())


def test_imagenet_c_missing_severity_is_refused(tmp_path, images):
    root = make_c_tree(tmp_path / "c", images)
    (root / "fog" / "2").rename(tmp_path / "moved")
    with pytest.raises(DataError, match=r"severities differ between corruptions \(gaussian_noise 1-2; fog 1\).*"
                                        r"choose severities=\[1\]"):
        imagenet_c_tree(root)
    assert list(imagenet_c_tree(root, severities=[1])) == [("gaussian_noise", 1), ("fog", 1)]
    assert dataset_kind("imagenet-c").recognize(root) is None  # still an ImageNet-C tree: one set of it can be read
    assert len(create_dataset("imagenet-c", root, corruption="gaussian_noise", severity=2)) == len(C_WNIDS)
    with pytest.raises(DataError, match="fog has no severity 2"):
        create_dataset("imagenet-c", root, corruption="fog", severity=2)


@pytest.mark.parametrize("bad, match", [("gaussian_noize", "gaussian_noize is neither ImageNet-C corruptions"),
                                        ("noise/fogg", "noise/fogg is neither"),
                                        ("fog/6", "severity folders 6 are not 1..5"),
                                        ("fog/", "no severity folders")])
def test_imagenet_c_bad_names(tmp_path, images, bad, match):
    root = make_c_tree(tmp_path / "c", images, corruptions=("gaussian_noise",))
    (root / bad).mkdir(parents=True)
    with pytest.raises(DataError, match=match) as err:
        imagenet_c_tree(root)
    assert str(root) in str(err.value) and "<corruption>/<severity>/<wnid>/" in str(err.value)


def test_imagenet_c_tree_given_as_another_kind(tmp_path, images):
    root = make_c_tree(tmp_path / "c", images)
    with pytest.raises(DataError, match=r"looks like an ImageNet-C folder .* use --domain imagenet-c="):
        create_dataset("imagenet-sketch", root)


# -- bad input shared by every kind -------------------------------------------------------------------------
def test_wnid_folders_that_are_not_imagenet_classes(tmp_path, images):
    root = build(tmp_path / "x", ["n01440764", "n99999999", "cats"], images, 1)
    for kind in ("folder", "imagenet-sketch", "stylized-imagenet", "imagenet-r"):
        with pytest.raises(DataError, match=r"2 of its 3 folders are not ImageNet-1k wnids \(cats, n99999999\)"):
            create_dataset(kind, root)


@pytest.mark.parametrize("kind", list_datasets())
def test_empty_domain(tmp_path, kind):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty domain|no corruption folders"):
        create_dataset(kind, tmp_path / "empty")
    folder = {"imagenet-v2": "0", "objectnet": "banana", "imagenet-c": "fog/1/n01440764", "imagenet-r": "n01443537",
              "imagenet-a": "n01498041"}.get(kind, "n01440764")
    (tmp_path / "hollow" / folder).mkdir(parents=True)
    options = {"corruption": "fog", "severity": 1} if kind == "imagenet-c" else {}
    with pytest.raises(DataError, match="no images in .*: an empty domain"):
        create_dataset(kind, tmp_path / "hollow", **options)


def test_missing_folder_and_loose_images(tmp_path, images):
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        create_dataset("imagenet-sketch", tmp_path / "nowhere")
    root = build(tmp_path / "mixed", ["n01440764"], images, 1)
    (root / "loose.JPEG").symlink_to(images[0])
    with pytest.raises(DataError, match="1 loose images .* beside its class folders"):
        create_dataset("folder", root)


def test_sources_pickle_for_loader_workers(tmp_path, images, objectnet_root):
    roots = {"imagenet-r": build(tmp_path / "r", ["n01443537"], images, 1),
             "imagenet-v2": build(tmp_path / "v2", ["5"], images, 1), "objectnet": objectnet_root}
    for kind, root in roots.items():
        source = create_dataset(kind, root)
        copy = pickle.loads(pickle.dumps(source))
        assert copy.samples == source.samples and copy.fingerprint() == source.fingerprint()


@pytest.mark.parametrize("name", ["robustbench_ibn.datasets", "robustbench_ibn.datasets.base",
                                  "robustbench_ibn.datasets.facts", "robustbench_ibn.datasets.kinds",
                                  "robustbench_ibn.datasets.imagenet_c", "robustbench_ibn.datasets.domains"])
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0

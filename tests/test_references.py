"""Drops in the same label space (protocol 4): the reference domain of ImageNet-R, -A and ObjectNet.

The shared ImageNet images of the classes of ImageNet-R, -A and ObjectNet (and 13 others) are the run's val; ImageNet-R/-A/ObjectNet/V2/Sketch trees are the synthetic ones
(examples/synthetic_domains.py). Which val images enter each reference, their labels and every one's restricted
top-5 are checked image by image against a computation here, from the full logits of the same random-init network
on the same crops, with the classes read from ../shared/reference/domains (independently of the package).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from robustbench_ibn import DataConfig, EvalResult, evaluate
from robustbench_ibn.data import DataError
from robustbench_ibn.datasets import DatasetDomain
from robustbench_ibn.leaderboard import entry_from_result, leaderboard_markdown
from robustbench_ibn.report import format_report
from robustbench_ibn.results import protocol_fingerprint
from test_datasets import REFERENCE, reference_rows
from test_natural import builder

CROP = 24
PIXELS = DataConfig(resize=28, crop=CROP, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
GEOMETRY = T.Compose([T.Resize(28), T.CenterCrop(CROP), T.PILToTensor()])  # the engine's default geometry, resized
RUN = dict(workers=0, progress=False, device="cpu", batch_size=64, data_config=PIXELS)
KINDS = ("imagenet-r", "imagenet-a", "objectnet", "imagenet-v2", "imagenet-sketch")
TIE = 1e-5  # logits closer than this may be ordered either way by float rounding between batches


class Counting(nn.Module):
    """A random linear classifier on the crop that counts the images it classifies (one forward pass each)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * CROP * CROP, 1000)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return self.linear(x.flatten(1))


def _net() -> Counting:
    torch.manual_seed(0)
    return Counting()


@pytest.fixture(scope="module")
def trees(sample_val, tmp_path_factory) -> dict[str, Path]:
    return builder.build(tmp_path_factory.mktemp("refs"), sample_val)


@pytest.fixture(scope="module")
def wnid_index() -> dict[str, int]:
    return {wnid: int(i) for i, wnid, _ in reference_rows("imagenet_1k_wnids.txt")}


@pytest.fixture(scope="module")
def spaces() -> dict[str, dict[str, int]]:
    """Per reference domain: ImageNet index -> its label in the dataset's space, from the reference files."""
    objectnet = json.loads((REFERENCE / "objectnet_to_imagenet.json").read_text())["mapping"]
    folders = sorted(objectnet)  # label k: the k-th of the 113 folders by name
    return {
        "val-on-imagenet-r-classes": {int(i): int(i) for _, _, i, _ in reference_rows("imagenet_r_wnids.txt")},
        "val-on-imagenet-a-classes": {int(i): int(i) for _, _, i, _ in reference_rows("imagenet_a_wnids.txt")},
        "val-on-objectnet-classes": {i: folders.index(f) for f, indices in objectnet.items() for i in indices},
    }


@pytest.fixture(scope="module")
def val(sample_val, spaces, wnid_index, tmp_path_factory) -> Path:
    """The shared images of every class of ImageNet-R, -A or ObjectNet (187) and the first 13 others, as val."""
    root = tmp_path_factory.mktemp("val")
    wanted = set().union(*spaces.values())
    folders = sorted(p for p in sample_val.iterdir() if p.is_dir())
    others = [p for p in folders if wnid_index[p.name] not in wanted][:13]
    for folder in [p for p in folders if wnid_index[p.name] in wanted] + others:
        (root / folder.name).mkdir()
        for image in folder.iterdir():
            (root / folder.name / image.name).symlink_to(image)
    return root


@pytest.fixture(scope="module")
def run(val, trees) -> tuple[EvalResult, Counting]:
    """Val, RGB+50, and a domain of each kind that matters here, in one run."""
    net = _net()
    result = evaluate(net, val, "rgb+50", domains=[f"{k}={trees[k]}" for k in KINDS], **RUN)
    return result, net


@pytest.fixture(scope="module")
def logits(run, val) -> dict[str, np.ndarray]:
    """Every val image's full 1000-way logits, computed here: PIL decode, torchvision geometry, the network."""
    result, net = run
    images = result.sources["val"].images
    crops = torch.stack([GEOMETRY(Image.open(val / rel).convert("RGB")) for rel in images]).float() / 255
    with torch.inference_mode():
        return dict(zip(images, net.linear(crops.flatten(1)).double().numpy()))


def _is_top5(prediction: np.ndarray, logits: np.ndarray, allowed: list[int]) -> bool:
    """Is ``prediction`` the best five of ``allowed`` by ``logits``, best first (up to float ties)?"""
    values = logits[prediction]
    rest = np.setdiff1d(allowed, prediction)
    return (set(prediction.tolist()) <= set(allowed) and len(set(prediction.tolist())) == 5
            and bool(np.all(np.diff(values) <= TIE)) and (not len(rest) or values[-1] >= logits[rest].max() - TIE))


@pytest.mark.parametrize("name", ["val-on-imagenet-r-classes", "val-on-imagenet-a-classes",
                                  "val-on-objectnet-classes"])
def test_the_reference_is_val_of_the_classes_predicted_among_them_image_by_image(run, logits, wnid_index, spaces,
                                                                                  name):
    result, _ = run
    space = spaces[name]
    images = result.sources["val"].images
    assert len(images) == 200
    expected_images = [rel for rel in images if wnid_index[Path(rel).parts[0]] in space]
    source = result.sources[name]
    assert source.images == expected_images and 50 < len(expected_images) < 100  # 79, 96 and 59 of the 200
    assert source.labels.tolist() == [space[wnid_index[Path(rel).parts[0]]] for rel in expected_images]
    predictions = result.predictions[name]
    assert predictions.shape == (len(expected_images), 5)
    allowed = sorted(space)
    for rel, prediction in zip(expected_images, predictions):
        assert _is_top5(prediction, logits[rel], allowed), rel
    # its errors: top-1/top-5 right when the predicted ImageNet class is (mapped to) the image's class
    mapped = np.vectorize(lambda i: space.get(int(i), -1))(predictions)
    right = mapped == source.labels[:, None]
    row = {r.transform: r for r in result.results}[name]
    assert (row.n, row.top1_err, row.top5_err) == (len(expected_images), 100 * (1 - right[:, 0].mean()),
                                                   100 * (1 - right.any(axis=1).mean()))
    assert (row.top1_drop, row.reference, result.reference_of(name)) == (0.0, name, name)
    domain = next(d for d in result.domains if d["name"] == name)
    assert (domain["source"], domain["reference"], domain["restricts"], domain["paired"]) == (name, name, "clean",
                                                                                             False)


def test_one_forward_pass_serves_clean_and_every_reference(run, trees):
    """The references come from the clean pass's logits: the network sees val twice (clean, RGB+50), each domain
    once, nothing more."""
    result, net = run
    assert net.seen == 2 * 200 + sum(len(result.sources[k].labels) for k in KINDS)


def test_each_drop_is_against_its_reference(run):
    result, _ = run
    rows = {r.transform: r for r in result.results}
    expected = {"rgb+50": "clean", "imagenet-v2": "clean", "imagenet-sketch": "clean",
                "imagenet-r": "val-on-imagenet-r-classes", "imagenet-a": "val-on-imagenet-a-classes",
                "objectnet": "val-on-objectnet-classes"}
    for name, reference in expected.items():
        row, base = rows[name], rows[reference]
        assert (row.reference, result.reference_of(name)) == (reference, reference)
        assert (row.top1_drop, row.top5_drop) == (row.top1_err - base.top1_err, row.top5_err - base.top5_err)
    # intervals: the same references; the reference rows are baselines (drop 0), not shifts of the mean drop
    u = result.uncertainty(n_boot=50)
    ci = {r["transform"]: r for r in u["rows"]}
    assert all(ci[n]["reference"] == r for n, r in expected.items())
    assert ci["val-on-objectnet-classes"]["top1_drop_ci"] == [0.0, 0.0]
    assert u["mean_drop"]["n_shifts"] == len(expected)
    assert u["mean_drop"]["top1"] == pytest.approx(np.mean([rows[n].top1_drop for n in expected]))
    # the table: reference rows stand before their datasets, without a drop; the header says what drops are against
    text = format_report([result], "markdown")
    assert "| val on ImageNet-R classes " in text and "a dataset scored among its own classes" in text
    line = next(line for line in text.splitlines() if line.startswith("| val on ObjectNet classes"))
    assert "(" not in line  # no drop in brackets


def test_the_record_keeps_references_and_a_damaged_one_is_refused(run, tmp_path):
    result, _ = run
    result.save(tmp_path / "r.json")
    loaded = EvalResult.load(tmp_path / "r.json")
    assert [r.to_dict() for r in loaded.results] == [r.to_dict() for r in result.results]
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["protocol"]["version"] == 4 and record["sources"]["val-on-objectnet-classes"]["derived_from"] == {
        "source": "val", "domain": "clean", "n": 200}
    for d in record["domains"]:
        if d["name"] == "imagenet-r":
            del d["reference"]  # a protocol 4 record must say what every drop is against
    (tmp_path / "bad.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"domains\[\d+\]\.reference"):
        EvalResult.load(tmp_path / "bad.json")


def test_a_protocol_3_record_reports_as_before_and_says_so(run, tmp_path):
    """A v3 record (no reference domains, drops against 1000-way clean) keeps its old drops, marked where shown."""
    result, _ = run
    record = result.to_dict()  # the caller's own copy: editing it below must leave the result as it was
    references = [d["name"] for d in record["domains"] if d.get("restricts")]
    record["domains"] = [{k: v for k, v in d.items() if k not in ("reference", "restricts")}
                         for d in record["domains"] if d["name"] not in references]
    for name in references:
        del record["sources"][name], record["predictions"][name], record["tied"][name]
    record["protocol"]["version"] = 3
    # what robust-eval wrote under protocol 3: the fingerprint of these domains at version 3, rows as v3 scored them
    record["protocol"]["fingerprint"] = protocol_fingerprint(
        record["sources"], record["domains"], record["protocol"]["precision"], 3)
    rows = {r["transform"]: r for r in record["results"]}
    record["results"] = [r for r in record["results"] if r["transform"] not in references]
    for row in record["results"]:
        for k in (1, 5):
            row[f"top{k}_drop"] = row[f"top{k}_err"] - rows["clean"][f"top{k}_err"]
    (tmp_path / "v3.json").write_text(json.dumps(record))
    old = EvalResult.load(tmp_path / "v3.json")
    rows = {r.transform: r for r in old.results}
    for name in ("imagenet-r", "objectnet", "imagenet-v2"):
        assert old.reference_of(name) == "clean"
        assert rows[name].top1_drop == rows[name].top1_err - rows["clean"].top1_err
    assert rows["imagenet-r"].top1_err == {r.transform: r for r in result.results}["imagenet-r"].top1_err
    note = old.drops_note()
    assert note.startswith("protocol 3 record: the drops of ImageNet-R, ImageNet-A, ObjectNet are against clean val "
                           "scored 1000-way")
    assert f"note: {note}" in [line.rstrip() for line in format_report([old], "markdown").splitlines()]
    page = leaderboard_markdown([entry_from_result(old, n_boot=20)])
    assert "(protocol v3: the drops of ImageNet-R, ImageNet-A, ObjectNet are against origin scored 1000-way" in page
    assert result.drops_note() is None
    assert result.protocol["version"] == 4 and all("reference" in d for d in result.domains)


def test_limit_and_skipped_images_restrict_the_reference_as_val(sample_val, trees, wnid_index, spaces, tmp_path):
    r_classes = spaces["val-on-imagenet-r-classes"]
    limited = evaluate(_net(), sample_val, "none", limit=60, domains=[f"imagenet-r={trees['imagenet-r']}"], **RUN)
    val = limited.sources["val"].images
    assert len(val) == 60 and limited.sources["val-on-imagenet-r-classes"].images == [
        rel for rel in val if wnid_index[Path(rel).parts[0]] in r_classes]
    # an unreadable val image of an ImageNet-R class, skipped: it leaves clean and the reference alike
    small = tmp_path / "val"
    shutil.copytree(trees["val"], small, symlinks=True)
    (small / "n01484850" / "broken.JPEG").write_bytes(b"not a jpeg")
    skipped = evaluate(_net(), small, "none", on_bad_image="skip", domains=[f"imagenet-r={trees['imagenet-r']}"],
                       **RUN)
    reference = skipped.sources["val-on-imagenet-r-classes"]
    assert "n01484850/broken.JPEG" not in skipped.sources["val"].images + reference.images
    kept = [rel for rel in skipped.sources["val"].images if wnid_index[Path(rel).parts[0]] in r_classes]
    assert reference.images == kept and len(kept) == len(skipped.predictions["val-on-imagenet-r-classes"]) == 5
    assert [s["image"] for s in reference.record["skipped"]] == ["n01484850/broken.JPEG"]


def test_the_full_policy_reference_is_the_1000_way_clean_prediction(trees):
    result = evaluate(_net(), trees["val"], "none", domains=[DatasetDomain(
        "imagenet-r", str(trees["imagenet-r"]), options={"subset_policy": "full"})], **RUN)
    name = "val-on-imagenet-r-classes-full"
    assert result.reference_of("imagenet-r") == name
    clean = dict(zip(result.sources["val"].images, result.predictions["clean"].tolist()))
    assert result.predictions[name].tolist() == [clean[rel] for rel in result.sources[name].images]


def test_a_val_without_the_datasets_classes_is_refused(trees, tmp_path):
    val = tmp_path / "val"
    (val / "n01440764").mkdir(parents=True)  # class 0: not an ImageNet-R class
    first = next((trees["val"] / "n01440764").iterdir())
    (val / "n01440764" / first.name).symlink_to(first.resolve())
    with pytest.raises(DataError, match="val-on-imagenet-r-classes"):
        evaluate(_net(), val, "none", domains=[f"imagenet-r={trees['imagenet-r']}"], **RUN)


def test_a_reported_row_without_a_published_reference_has_no_drop(monkeypatch):
    """The packaged ResNet-50 entry takes its R/A/ObjectNet references from the testbed; without one a row says its
    drop is not in the same label space rather than measuring it against 1000-way val."""
    from robustbench_ibn.datasets import facts
    from robustbench_ibn.leaderboard import _check_entry, natural_shift_entry

    rows = {r["transform"]: r for r in natural_shift_entry()["results"]}
    assert rows["imagenet-a"]["top1_drop"] == pytest.approx(100.0 - (100 - 91.86))  # testbed: 0.0 % and 91.86 %
    published = facts.reported_results()
    monkeypatch.setattr(facts, "reported_results", lambda domain=None: [
        r for r in published if not (r.domain == "imagenet-a" and r.metric == "reference_top1_acc")])
    entry = natural_shift_entry()
    rows = {r["transform"]: r for r in entry["results"]}
    assert "val-on-imagenet-a-classes" not in rows and "val-on-imagenet-r-classes" in rows
    assert (rows["imagenet-a"]["reference"], rows["imagenet-a"]["top1_drop"], rows["imagenet-a"]["top5_drop"]) == (
        None, None, None)
    assert "ImageNet-A: no published top-1 on the val images of its classes" in entry["source"]["notes"]
    _check_entry(json.loads(json.dumps(entry)), Path("reported.json"), "reported")
    assert "| 100.00/85.56 (-/-) |" in leaderboard_markdown([entry])

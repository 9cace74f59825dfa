"""Natural-shift datasets as domains of a run: labels through whole runs, scoring rules end to end, ImageNet-C
reports, the command line and its bad input, plug-in kinds, torchrun and resume, reported entries, the docs page.

Every tree is built in tmp_path from symlinks to the shared ImageNet images (examples/synthetic_domains.py, or
here); expected labels come from ../shared/reference/domains, read independently of the package.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from robustbench_ibn import DataConfig, EvalResult, evaluate
from robustbench_ibn.cli.eval import main
from robustbench_ibn.corruption import corruption_scores, imagenet_c_runs
from robustbench_ibn.data import DataError
from robustbench_ibn.datasets import DATASETS, DatasetDomain, check_domains, facts
from robustbench_ibn.leaderboard import (entry_from_result, leaderboard_markdown, load_entries, natural_shift_entry,
                                         write_leaderboard)
from robustbench_ibn.report import format_report
from test_datasets import REFERENCE, reference_rows
from test_plugins import make_distribution
from test_scale import kill_once_committed

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PIXELS = DataConfig(resize=40, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
RUN = dict(workers=0, progress=False, device="cpu")
ALL_KINDS = ["folder", "imagenet-sketch", "stylized-imagenet", "imagenet-r", "imagenet-a", "imagenet-v2", "objectnet",
             "imagenet-c"]


def _load_builder():
    spec = importlib.util.spec_from_file_location("synthetic_domains", ROOT / "examples" / "synthetic_domains.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = _load_builder()


@pytest.fixture(scope="module")
def trees(sample_val, tmp_path_factory) -> dict[str, Path]:
    return builder.build(tmp_path_factory.mktemp("natural"), sample_val)


@pytest.fixture(scope="module")
def index() -> dict[str, int]:
    return {wnid: int(i) for i, wnid, _ in reference_rows("imagenet_1k_wnids.txt")}


@pytest.fixture(scope="module")
def objectnet_reference() -> dict:
    return json.loads((REFERENCE / "objectnet_to_imagenet.json").read_text())


class Fixed(nn.Module):
    """The same chosen logits for every image: what the engine makes of them is then known exactly."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1) + 0 * x.mean()


def crafted(high: dict[int, float]) -> torch.Tensor:
    """Distinct logits (lower index, higher logit) with ``high`` on top: no ties anywhere."""
    logits = -torch.arange(1000, dtype=torch.float64) * 1e-3
    for column, value in high.items():
        logits[column] = value
    return logits


def top5(logits: torch.Tensor, allowed: list[int] | None = None) -> list[int]:
    """The five best columns (of ``allowed``), computed without the package."""
    values = logits.numpy().copy()
    if allowed is not None:
        mask = np.full(1000, -np.inf)
        mask[allowed] = 0
        values = values + mask
    return [int(i) for i in np.argsort(-values, kind="stable")[:5]]


# -- every image's label through a whole run ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def all_kinds_record(trees, tmp_path_factory) -> dict:
    """One evaluate() run of val + RGB+50 + one domain of every kind (ImageNet-C: 2 x 2 sets), as saved JSON."""
    domains = [f"{kind}={trees[kind]}" for kind in ALL_KINDS]
    out = tmp_path_factory.mktemp("record") / "all.json"
    net = Fixed(crafted({}))
    evaluate(net, trees["val"], "rgb+50", data_config=PIXELS, domains=domains, output=out, batch_size=4, **RUN)
    return json.loads(out.read_text())


def expected_label(kind: str, rel: str, index: dict[str, int], objectnet: dict) -> int:
    folder = Path(rel).parts[0]
    if kind == "imagenet-v2":
        return int(folder)  # the folder is the class index: never its place in a string sort
    if kind == "objectnet":
        return sorted(objectnet["mapping"]).index(folder)  # label k: the k-th overlapping folder by name
    return index[folder]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_image_is_labelled_by_its_folder_through_a_run(all_kinds_record, trees, index, objectnet_reference,
                                                             kind):
    record = all_kinds_record
    keys = [k for k in record["sources"] if k == kind or k.startswith(f"{kind}/")]
    assert len(keys) == (4 if kind == "imagenet-c" else 1)
    for key in keys:
        source = record["sources"][key]
        assert source["kind"] == kind and len(source["images"]) == len(source["labels"]) == source["n"] > 0
        for rel, label in zip(source["images"], source["labels"]):
            assert label == expected_label(kind, rel, index, objectnet_reference), (key, rel)
        domain = next(d for d in record["domains"] if d["name"] == key)
        assert domain == {**domain, "source": key, "shift": None, "paired": False}
        assert len(record["predictions"][key]) == source["n"]
    if kind == "imagenet-v2":
        assert sorted(record["sources"][kind]["labels"]) == list(range(12))  # 0..11, where "10" < "2" as strings
        assert record["sources"][kind]["options"] == {"variant": "matched-frequency"}
    if kind == "objectnet":  # the other classes' images are excluded and counted
        assert not any(rel.startswith(builder.OBJECTNET_OTHER) for rel in record["sources"][kind]["images"])
        assert record["sources"][kind]["excluded_images"] == 2
        assert record["sources"][kind]["label_space"]["kind"] == "mapping"
    if kind == "imagenet-c":
        assert keys == [f"imagenet-c/{c}/{s}" for c in builder.CORRUPTIONS for s in builder.SEVERITIES]
        assert record["sources"]["imagenet-c/fog/2"]["options"] == {"corruption": "fog", "severity": 2,
                                                                     "upsample": False}


def test_dataset_domains_come_after_the_shifts_with_their_titles(all_kinds_record):
    labels = [d["label"] for d in all_kinds_record["domains"]]
    assert labels[:3] == ["origin", "RGB+50", "folder folder"]
    # each label space's reference row (the val images of its classes) stands before its first domain
    assert labels[3:10] == ["ImageNet-Sketch", "Stylized-ImageNet", "val on ImageNet-R classes", "ImageNet-R",
                            "val on ImageNet-A classes", "ImageNet-A", "ImageNet-V2 matched-frequency"]
    assert labels[10:] == ["val on ObjectNet classes", "ObjectNet", "ImageNet-C gaussian_noise 1",
                           "ImageNet-C gaussian_noise 2", "ImageNet-C fog 1", "ImageNet-C fog 2"]


def test_the_api_takes_domain_objects_with_options_as_the_strings(trees):
    by_text = evaluate(Fixed(crafted({})), trees["val"], "none", data_config=PIXELS,
                       domains=[f"imagenet-r:renditions={trees['imagenet-r']}"], **RUN)
    by_object = evaluate(Fixed(crafted({})), trees["val"], "none", data_config=PIXELS,
                         domains=[DatasetDomain("imagenet-r", str(trees["imagenet-r"]), "renditions",
                                                {"subset_policy": "subset"})], **RUN)
    names = ["clean", "val-on-imagenet-r-classes", "renditions"]
    assert [d["name"] for d in by_text.domains] == names == [d["name"] for d in by_object.domains]
    assert by_text.domains[2]["label"] == "renditions" and by_text.reference_of("renditions") == names[1]
    assert np.array_equal(by_text.predictions["renditions"], by_object.predictions["renditions"])


# -- scoring rules end to end, on crafted logits through the engine's classify --------------------------------------
@pytest.mark.parametrize("kind", ["imagenet-r", "imagenet-a"])
def test_the_200_class_argmax_and_the_1000_way_alternative_end_to_end(trees, kind):
    classes = [int(i) for _, _, i, _ in reference_rows(f"{kind.replace('-', '_')}_wnids.txt")]
    wnids = sorted(p.name for p in trees[kind].iterdir())
    folder_index = {w: int(i) for _, w, i, _ in reference_rows(f"{kind.replace('-', '_')}_wnids.txt")}
    first = folder_index[wnids[0]]
    assert 0 not in classes
    logits = crafted({0: 10.0, first: 5.0})  # 1000-way: class 0 (outside the 200); 200-way: the first folder's class
    rows = {}
    for policy in ("subset", "full"):
        result = evaluate(Fixed(logits), trees["val"], "none", data_config=PIXELS,
                          domains=[DatasetDomain(kind, str(trees[kind]), options={"subset_policy": policy})], **RUN)
        expected = top5(logits, classes if policy == "subset" else None)
        assert result.predictions[kind].tolist() == [expected] * 6
        assert result.sources[kind].record["label_space"]["policy"] == policy
        rows[policy] = {r.transform: r for r in result.results}[kind]
    assert rows["subset"].top1_err == pytest.approx(100 * 4 / 6)  # the first folder's 2 images of 6 are right
    assert rows["full"].top1_err == 100.0  # class 0 is never an ImageNet-R/-A label


def test_objectnet_many_to_one_scoring_end_to_end(trees, objectnet_reference):
    chair = objectnet_reference["mapping"]["chair"]
    mapped = sorted({i for v in objectnet_reference["mapping"].values() for i in v})
    assert 0 not in mapped and len(chair) == 3
    logits = crafted({0: 10.0, chair[2]: 5.0})  # chair's third ImageNet class: right for chair, many-to-one
    rows = {}
    for policy in ("subset", "full"):
        result = evaluate(Fixed(logits), trees["val"], "none", data_config=PIXELS,
                          domains=[DatasetDomain("objectnet", str(trees["objectnet"]),
                                                 options={"subset_policy": policy})], **RUN)
        assert result.predictions["objectnet"].tolist() == [top5(logits, mapped if policy == "subset" else None)] * 6
        rows[policy] = {r.transform: r for r in result.results}["objectnet"]
        images = result.sources["objectnet"].images
        assert len(images) == 6 and {Path(i).parts[0] for i in images} == set(builder.OBJECTNET_FOLDERS)
    assert rows["subset"].top1_err == pytest.approx(100 * 4 / 6)  # the 2 chair images of 6
    assert rows["full"].top1_err == 100.0  # class 0 maps to no ObjectNet class


# -- ImageNet-C: mCE of a run, its reports --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def c_run(sample_val, tmp_path_factory):
    """A 2 x 2 ImageNet-C tree whose sets hold 1..4 images of class 20 out of 5, and a val of classes 0 and 20; a
    model that always says 20: every set's error differs, the clean error is 50."""
    root = tmp_path_factory.mktemp("c")
    wnids = sorted(p.name for p in sample_val.iterdir())  # even indices: wnids[10] is class 20
    photos = sorted(sample_val.glob("*/*.JPEG"))[50:]
    crop = T.Compose([T.Resize(256), T.CenterCrop(224)])
    k = 0
    for j, (c, s) in enumerate([(c, s) for c in ("gaussian_noise", "fog") for s in (1, 2)]):
        for n, wnid in ((j + 1, wnids[10]), (4 - j, wnids[0])):
            folder = root / "imagenet-c" / c / str(s) / wnid
            folder.mkdir(parents=True)
            for _ in range(n):
                crop(Image.open(photos[k]).convert("RGB")).save(folder / f"{k}.JPEG", quality=85)
                k += 1
    val = root / "val"
    for wnid in (wnids[0], wnids[10]):
        (val / wnid).mkdir(parents=True)
        image = next((sample_val / wnid).iterdir())
        (val / wnid / image.name).symlink_to(image)
    result = evaluate(Fixed(crafted({20: 5.0})), val, "none", data_config=PIXELS,
                      domains=[f"imagenet-c={root / 'imagenet-c'}"], **RUN)
    return result


def test_mce_of_a_run_is_corruption_scores_of_its_set_errors(c_run):
    rows = {r.transform: r for r in c_run.results}
    errors = {(c, s): rows[f"imagenet-c/{c}/{s}"].top1_err for c in ("gaussian_noise", "fog") for s in (1, 2)}
    assert [round(e, 4) for e in errors.values()] == [80.0, 60.0, 40.0, 20.0] and rows["clean"].top1_err == 50.0
    (run,) = imagenet_c_runs(c_run)
    assert run.name == "imagenet-c" and run.label == "ImageNet-C"
    expected = corruption_scores(errors, clean_error=50.0)
    assert run.scores.to_dict() == expected.to_dict()
    alexnet = json.loads((REFERENCE / "imagenet_c_constants.json").read_text())
    by_name = {e["name"]: e for e in alexnet["benchmark_corruptions"]}
    fog_ce = 100 * 30.0 / (100 * by_name["fog"]["alexnet_err"])  # mean of 40 and 20, over AlexNet's fog error
    assert run.scores.ce["fog"] == pytest.approx(fog_ce)
    relative = 100 * (70.0 - 50.0) / (100 * (by_name["gaussian_noise"]["alexnet_err"] - alexnet["alexnet_clean_err"]))
    assert run.scores.relative_ce["gaussian_noise"] == pytest.approx(relative)
    assert run.scores.mce == pytest.approx((fog_ce + run.scores.ce["gaussian_noise"]) / 2)
    assert not run.scores.complete


def test_imagenet_c_reports_in_every_format(c_run, tmp_path):
    c_run.save(tmp_path / "c.json")
    result = EvalResult.load(tmp_path / "c.json")  # from the record alone
    scores = imagenet_c_runs(result)[0].scores
    markdown = format_report([result], ci=True, n_boot=20)
    table = [line for line in markdown.split("\n\n")[1].splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in table][1:] == ["origin", "95% CI", "ImageNet-C mCE", "95% CI"]
    assert f"mCE {scores.mce:.2f}, relative {scores.relative_mce:.2f} (partial)" in table[3]
    assert "ImageNet-C: not the published mCE" in markdown and "missing shot_noise" in markdown
    assert "data imagenet-c: ImageNet-C tree" in markdown and "4 sets (2 corruptions)" in markdown
    corruption = markdown.split("ImageNet-C per corruption")[1]
    assert (f"| gaussian_noise | {scores.ce['gaussian_noise']:.2f} | {scores.relative_ce['gaussian_noise']:.2f} "
            "| 70.00 |") in re.sub(" +", " ", corruption)
    assert f"| mCE | {scores.mce:.2f} | {scores.relative_mce:.2f} | 50.00 |" in re.sub(" +", " ", corruption)
    flips = markdown.split("flip rate:")[1].split("ImageNet-C per corruption")[0]
    assert "(shifts of the origin images only)" in flips and "ImageNet-C" not in flips.split(":", 1)[1]
    latex = format_report([result], "latex")
    assert r"ImageNet-C mCE &" in latex and f"gaussian\\_noise & {scores.ce['gaussian_noise']:.2f}" in latex
    frame = pd.read_csv(io.StringIO(format_report([result], "csv")))
    mce = frame[frame["row"] == "mce"].iloc[0]
    assert mce["transform"] == "imagenet-c/mce" and mce["ce"] == pytest.approx(scores.mce, abs=1e-4)
    assert mce["relative_ce"] == pytest.approx(scores.relative_mce, abs=1e-4) and "not the published" in mce["note"]
    fog = frame[frame["transform"] == "imagenet-c/fog"].iloc[0]
    assert fog["top1_err"] == pytest.approx(30.0) and fog["n"] == 10 and fog["row"] == "corruption"
    assert len(frame[frame["row"] == "domain"]) == 5  # clean and the 4 sets
    report = json.loads(format_report([result], "json", n_boot=20))
    (tree,) = report["imagenet_c"]
    assert tree["mce"] == pytest.approx(scores.mce) and tree["complete"] is False
    assert tree["domains"] == {f"{c}/{s}": f"imagenet-c/{c}/{s}" for c in ("gaussian_noise", "fog") for s in (1, 2)}


def test_a_measured_entry_shows_imagenet_c_as_one_mce_column(c_run):
    trained = dataclasses.replace(c_run, weights={"kind": "official", "location": "x", "sha256": "ab" * 32,
                                                  "seed": None, "description": "x"})
    entry = entry_from_result(trained, n_boot=20)
    assert {r["tree"] for r in entry["results"] if "tree" in r} == {"imagenet-c"}
    assert entry["corruption"]["imagenet-c"]["mce"] == pytest.approx(imagenet_c_runs(c_run)[0].scores.mce)
    # the tree is one row of the ranking's mean drop too (its 4 sets' mean error 50 against clean 50), not four
    assert entry["mean_drop"]["n_shifts"] == 1 and entry["mean_drop"]["top1"] == pytest.approx(0.0)
    page = leaderboard_markdown([entry])
    header = next(line for line in page.splitlines() if line.startswith("| rank"))
    assert header == ("| rank | model | weights | geometry | origin | ImageNet-C mCE | mean top-1 drop [95% CI] | n "
                      "| date |")
    assert "(partial)" in page


def test_the_drop_bars_leave_imagenet_c_sets_to_the_mce_table(c_run, tmp_path, monkeypatch):
    import robustbench_ibn.plots as plots

    with pytest.raises(ValueError, match="summarised by their mCE"):
        plots.plot_drop_bars([c_run], tmp_path / "c.svg", n_boot=20)
    val = c_run.sources["val"].record["root"]
    tree = Path(next(s.record["root"] for k, s in c_run.sources.items() if k != "val")).parents[1]
    both = evaluate(Fixed(crafted({20: 5.0})), val, "rgb+50", data_config=PIXELS, domains=[f"imagenet-c={tree}"], **RUN)
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: figures.append(figure) or Path(path))
    plots.plot_drop_bars([both], tmp_path / "b.svg", ci=False)
    (figure,) = figures
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["RGB+50"]  # one bar, not 1 + 4 sets
    assert "not shown: imagenet-c, see its mCE table" in figure._suptitle.get_text()


# -- the command line ------------------------------------------------------------------------------------------------
TINY = """
from torch import nn
from robustbench_ibn import DataConfig, ModelInfo, register_model

@register_model("tiny_nat{crop}",
                info=ModelInfo(name="tiny_nat{crop}", data_config=DataConfig(resize={crop}, crop={crop})))
def tiny():
    return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 1000))
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("plugin")
    for crop in (32, 240):
        (folder / f"tiny{crop}.py").write_text(TINY.format(crop=crop))
    return ["--plugin", str(folder / "tiny32.py"), "--plugin", str(folder / "tiny240.py"), "--weights", "random",
            "--workers", "0", "--no-progress"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_transforms_none_with_domains_only(capsys, trees, tiny):
    code, out, err = run(capsys, *tiny, "--model", "tiny_nat32", "--transforms", "none", "--data", trees["val"],
                         "--domain", f"imagenet-v2={trees['imagenet-v2']}", "--format", "csv")
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert frame["transform"].tolist() == ["clean", "imagenet-v2"]
    assert frame["label"].tolist() == ["origin", "ImageNet-V2 matched-frequency"]


def test_subset_policy_and_domain_options_reach_the_record(capsys, trees, tiny, tmp_path):
    out = tmp_path / "r.json"
    code, _, err = run(capsys, *tiny, "--model", "tiny_nat32", "--transforms", "none", "--data", trees["val"],
                       "--domain", f"imagenet-r={trees['imagenet-r']}", "--domain", f"objectnet={trees['objectnet']}",
                       "--domain", f"imagenet-v2:v2={trees['imagenet-v2']}", "--subset-policy", "full",
                       "--domain-option", "v2:variant=matched-frequency", "--output", out)
    assert code == 0, err
    sources = json.loads(out.read_text())["sources"]
    assert sources["imagenet-r"]["options"] == {"subset_policy": "full"}
    assert sources["imagenet-r"]["label_space"]["policy"] == "full"
    assert sources["objectnet"]["label_space"]["policy"] == "full"
    assert sources["v2"]["options"] == {"variant": "matched-frequency"}


def test_imagenet_c_above_224_is_refused_unless_upsampled(capsys, trees, tiny, tmp_path):
    base = [*tiny, "--model", "tiny_nat240", "--transforms", "none", "--data", trees["val"],
            "--domain", f"imagenet-c={trees['imagenet-c']}"]
    code, out, err = run(capsys, *base, "--output", tmp_path / "no.json")
    assert code == 2 and out == "" and not (tmp_path / "no.json").exists()
    assert "crop is 240 px but ImageNet-C's files are 224 px" in err and "--domain-option NAME:upsample=true" in err
    code, out, err = run(capsys, *base, "--domain-option", "imagenet-c:upsample=true", "--output", tmp_path / "up.json")
    assert code == 0, err
    record = json.loads((tmp_path / "up.json").read_text())
    assert record["sources"]["imagenet-c/fog/1"]["options"]["upsample"] is True
    assert "NOT the official ImageNet-C protocol" in record["sources"]["imagenet-c/fog/1"]["description"]


BAD = {
    "same path twice": (["--domain", "imagenet-r={r}", "--domain", "imagenet-a:again={r}/"],
                        r"Expected each dataset folder once, but .* is given twice \(as imagenet-r and again\)"),
    "val as a domain": (["--domain", "folder={val}"], "Expected a domain folder other than ImageNet val's"),
    "a V2 folder given as imagenet-r": (["--domain", "imagenet-r={v2}"],
                                        "looks like an ImageNet-V2 folder .* use --domain imagenet-v2="),
    "an empty domain": (["--domain", "folder={empty}"], "has no class folders: an empty domain"),
    "two of one kind without labels": (["--domain", "imagenet-v2={v2}", "--domain", "imagenet-v2={sketch}"],
                                       "Expected a label for each of the 2 imagenet-v2 domains"),
    "a reserved name": (["--domain", "imagenet-r:clean={r}"], "Expected a domain name other than 'clean'"),
    "an unknown kind": (["--domain", "imagenet-x={r}"], r"Unknown dataset 'imagenet-x'. Did you mean"),
    "not KIND=PATH": (["--domain", "imagenet-r"], "Expected a domain as KIND=PATH or KIND:LABEL=PATH"),
    "a bad label": (["--domain", "imagenet-r:a/b={r}"], "Expected the label of domain"),
    "an option for no domain": (["--domain", "imagenet-r={r}", "--domain-option", "objectnet:subset_policy=full"],
                                "Expected --domain-option for one of the domains"),
    "an option the kind lacks": (["--domain", "imagenet-r={r}", "--domain-option", "imagenet-r:variant=x"],
                                 "Expected options of domain imagenet-r"),
    "a bad option value": (["--domain", "imagenet-v2={v2}", "--domain-option", "imagenet-v2:variant=best"],
                           "Expected option variant of domain imagenet-v2 to be one of"),
    "upsample that is no flag": (["--domain", "imagenet-c={c}", "--domain-option", "imagenet-c:upsample=maybe"],
                                 "to be true or false"),
    "a subset policy for no such kind": (["--domain", "folder={sketch}", "--subset-policy", "full"],
                                         "Expected a domain of a kind with a subset policy"),
    "the policy twice, differently": (["--domain", "imagenet-r={r}", "--subset-policy", "full",
                                       "--domain-option", "imagenet-r:subset_policy=subset"],
                                      "Expected one subset policy for domain imagenet-r"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_domain_input_is_refused_before_any_work(capsys, trees, tiny, tmp_path, case):
    argv, message = BAD[case]
    (tmp_path / "empty").mkdir()
    paths = {"r": trees["imagenet-r"], "v2": trees["imagenet-v2"], "sketch": trees["imagenet-sketch"],
             "c": trees["imagenet-c"], "val": trees["val"], "empty": tmp_path / "empty"}
    state = tmp_path / "state"
    code, out, err = run(capsys, *tiny, "--model", "tiny_nat32", "--transforms", "none", "--data", trees["val"],
                         "--output", tmp_path / "r.json", "--state-dir", state, *[a.format(**paths) for a in argv])
    assert code == 2 and out == "", err
    assert re.search(message, err), err
    assert not (tmp_path / "r.json").exists() and not state.exists()  # nothing half-written, nothing evaluated


def test_domains_need_clean_val(capsys, trees, tiny, monkeypatch):
    monkeypatch.delenv("ROBUSTBENCH_IBN_DATA", raising=False)
    with pytest.raises(SystemExit):
        main([*tiny, "--model", "tiny_nat32", "--domain", f"imagenet-r={trees['imagenet-r']}"])
    assert "--data is required" in capsys.readouterr().err


def test_list_datasets_shows_every_kind_with_layout_and_options(capsys):
    code, out, err = run(capsys, "--list-datasets")
    assert code == 0, err
    for kind in ALL_KINDS:
        assert re.search(rf"^{re.escape(kind)} ", out, re.M), kind
    assert "layout: folders 0..999 named by class index, or wnid folders" in out
    assert "upsample: true | false" in out and "subset_policy: subset" in out and "corruptions: only" in out
    code, out, _ = run(capsys, "--list-datasets", "imagenet-[ra]")
    assert [line.split()[0] for line in out.splitlines() if not line.startswith(" ")] == ["imagenet-a", "imagenet-r"]


KIND_PLUGIN = """
from robustbench_ibn.datasets import DatasetKind, locate_wnid_folders, register_dataset
from robustbench_ibn.labels import ImageNet1k


@register_dataset
class Renders(DatasetKind):
    kind, title, layout_help = "{kind}", "My renders", "wnid folders of renders"
    locate = classmethod(locate_wnid_folders)

    def __init__(self, root, config, *, limit=None):
        self._build(root, config, limit, ImageNet1k(), {{}})
"""


def test_a_plugin_file_registers_a_dataset_kind(capsys, trees, tiny, tmp_path):
    plugin = tmp_path / "renders.py"
    plugin.write_text(KIND_PLUGIN.format(kind="my-renders"))
    with DATASETS.snapshot():
        code, out, err = run(capsys, "--plugin", plugin, "--list-datasets", "my-*")
        assert code == 0 and out.startswith("my-renders  My renders") and f"[plug-in file {plugin}]" in out
        code, out, err = run(capsys, *tiny, "--plugin", plugin, "--model", "tiny_nat32", "--transforms", "none",
                             "--data", trees["val"], "--domain", f"my-renders={trees['folder']}", "--format", "csv")
        assert code == 0, err
        assert pd.read_csv(io.StringIO(out))["label"].tolist() == ["origin", "My renders"]
    broken = tmp_path / "broken.py"
    broken.write_text(KIND_PLUGIN.format(kind="half-there") + "\nraise RuntimeError('oops')\n")
    code, _, err = run(capsys, "--plugin", broken, "--list-datasets")
    assert code == 2 and "Could not load plug-in file" in err and "oops" in err
    assert "half-there" not in DATASETS


def test_an_installed_package_adds_dataset_kinds_by_entry_point(capsys, tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_distribution(site, "fake-kinds", "[robustbench_ibn.datasets]\nkinds = rbtest_kinds\n",
                      {"rbtest_kinds": KIND_PLUGIN.format(kind="ep-renders")})
    monkeypatch.syspath_prepend(str(site))
    with DATASETS.snapshot():
        code, out, err = run(capsys, "--list-datasets", "ep-*")
        assert code == 0, err
        assert out.startswith("ep-renders") and "(robustbench_ibn.datasets) of fake-kinds]" in out


# -- resume, torchrun, bad images, progress ------------------------------------------------------------------------
def _cli(trees: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--model", "resnet18_ibn_b", "--weights", "random", "--transforms", "rgb+50,std1.5", "--data",
            str(trees["val"]), "--domain", f"imagenet-r={trees['imagenet-r']}", "--domain",
            f"objectnet={trees['objectnet']}", "--workers", "0", "--format", "json", "--output", str(out), *extra]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ROBUSTBENCH_IBN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def _predictions(path: Path) -> dict:
    record = json.loads(path.read_text())
    return {"labels": {k: s["labels"] for k, s in record["sources"].items()}, **record["predictions"]}


@pytest.mark.slow
def test_two_ranks_equal_one_process_with_dataset_domains(trees, tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    extra = ["--batch-size", "4", "--no-progress"]
    subprocess.run([str(BIN / "robust-eval"), *_cli(trees, one, *extra)], check=True, capture_output=True,
                   env=_env(tmp_path), timeout=300)
    done = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "robustbench_ibn",
                           *_cli(trees, two, *extra)], capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(_predictions(one)) == ["labels", "clean", "rgb+50", "std1.5", "val-on-imagenet-r-classes", "imagenet-r",
                                       "val-on-objectnet-classes", "objectnet"]
    assert _predictions(two) == _predictions(one)
    assert json.loads(two.read_text())["results"] == json.loads(one.read_text())["results"]


@pytest.mark.slow
def test_a_killed_run_with_dataset_domains_resumes_to_the_same_record(trees, tmp_path):
    reference = tmp_path / "reference.json"
    subprocess.run([str(BIN / "robust-eval"), *_cli(trees, reference, "--batch-size", "1", "--no-progress")],
                   check=True, capture_output=True, env=_env(tmp_path), timeout=300)
    state, resumed = tmp_path / "state", tmp_path / "resumed.json"
    argv = [str(BIN / "robust-eval"), *_cli(trees, resumed, "--batch-size", "1", "--state-dir", str(state))]
    # Killed once a batch of a dataset domain is committed (pass 0 is val's; 1 and 2 are ImageNet-R's and ObjectNet's).
    committed = kill_once_committed(argv, _env(tmp_path), state, "*/batch-p1-*.npz")
    assert 1 <= committed < 6 + 6 + 6, "the run must be killed part-way for this test to mean anything"
    again = subprocess.run(argv, capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr
    assert _predictions(resumed) == _predictions(reference)
    assert not list(state.glob("*/batch-*.npz"))


def test_a_bad_image_in_a_dataset_domain_is_named_or_skipped(trees, tmp_path):
    root = tmp_path / "imagenet-r"
    for folder in trees["imagenet-r"].iterdir():
        (root / folder.name).mkdir(parents=True)
        for image in folder.iterdir():
            (root / folder.name / image.name).symlink_to(image)
    bad = next(root.iterdir()) / "broken.JPEG"
    bad.write_bytes(b"not a jpeg")
    args = dict(data_config=PIXELS, domains=[f"imagenet-r={root}"], **RUN)
    with pytest.raises(DataError, match=r"1 of the 7 images cannot be decoded:\n  .*broken\.JPEG"):
        evaluate(Fixed(crafted({})), trees["val"], "none", **args)
    result = evaluate(Fixed(crafted({})), trees["val"], "none", on_bad_image="skip", **args)
    record = result.sources["imagenet-r"].record
    assert len(result.sources["imagenet-r"].labels) == 6
    assert [s["image"] for s in record["skipped"]] == [f"{bad.parent.name}/broken.JPEG"]


def test_the_progress_bar_names_the_set_being_decoded(trees, capsys):
    evaluate(Fixed(crafted({})), trees["val"], "none", data_config=PIXELS,
             domains=[f"imagenet-c={trees['imagenet-c']}"], workers=0, device="cpu", progress=True, batch_size=2)
    err = capsys.readouterr().err
    assert "x 5 domains" in err and "imagenet-c/fog/2" in err


def test_check_domains_lists_folders_only(trees, monkeypatch):
    """The check before the model is built never lists images (that is open_domains' work)."""
    from robustbench_ibn.datasets import base

    monkeypatch.setattr(base, "list_images", lambda *a: pytest.fail("check_domains listed images"))
    checked = check_domains([f"imagenet-c={trees['imagenet-c']}", f"objectnet:on={trees['objectnet']}"])
    assert [d.name for d in checked] == ["imagenet-c", "on"]


# -- reported entries --------------------------------------------------------------------------------------------
def test_the_reported_resnet50_entry_is_the_preferred_published_numbers():
    entry = natural_shift_entry()
    preferred = {(r.domain, r.variant, r.metric): r.value for r in facts.reported_results() if r.preferred}
    rows = {r["transform"]: r for r in entry["results"]}
    assert rows["clean"]["top1_err"] == pytest.approx(100 - preferred["imagenet-val", None, "top1_acc"])
    assert rows["clean"]["top5_err"] == pytest.approx(100 - preferred["imagenet-val", None, "top5_acc"])
    r = rows["imagenet-r"]
    assert (r["top1_err"], r["top5_err"]) == (pytest.approx(63.83), pytest.approx(47.13))
    # drops in the same label space: against the published top-1 on the val images of the set's classes; no top-5
    # is published for those, so no top-5 drop
    for kind, name in (("imagenet-r", "val-on-imagenet-r-classes"), ("imagenet-a", "val-on-imagenet-a-classes"),
                       ("objectnet", "val-on-objectnet-classes")):
        reference = rows[name]
        assert reference["top1_err"] == pytest.approx(100 - preferred[kind, None, "reference_top1_acc"])
        assert (reference["reference"], rows[kind]["reference"], rows[kind]["top5_drop"]) == (name, name, None)
        assert rows[kind]["top1_drop"] == pytest.approx(rows[kind]["top1_err"] - reference["top1_err"])
    assert r["top1_drop"] == pytest.approx(63.83 - 7.88)
    assert rows["imagenet-sketch"]["top1_drop"] == pytest.approx(75.91 - 23.87)  # 1000 classes: against clean
    assert rows["imagenet-v2/threshold0.7"]["top5_err"] is None and rows["objectnet"]["top1_err"] == pytest.approx(
        64.25)
    assert entry["corruption"]["imagenet-c"]["mce"] == 76.7
    expected_sets = {(d, v) for d, v, _ in preferred} - {("imagenet-c", None)}
    assert len(rows) == len(expected_sets) + 3  # and the three reference rows
    for key in {r.source for r in facts.reported_results() if r.preferred}:
        assert facts.reported_sources()[key]["citation"] in entry["source"]["citation"]


def test_a_page_built_in_any_folder_has_the_packaged_reported_entries(tmp_path, capsys):
    from robustbench_ibn.cli.leaderboard import main as leaderboard_main

    board = tmp_path / "elsewhere"
    board.mkdir()
    assert leaderboard_main([str(board)]) == 0
    page = (board / "README.md").read_text(encoding="utf-8")
    assert "No reported entries" not in page and "These ship with robustbench-ibn" in page
    assert "ibn-net-eccv2018/table1" in page and "natural-shifts/resnet50-tv" in page
    assert "| ImageNet-C mCE |" in page and "| 76.70 |" in page
    assert len([e for e in load_entries(board) if e["kind"] == "reported"]) == 27
    # A copy of a packaged entry in the folder is refused: two rows of one model would rank against themselves.
    (board / "reported").mkdir()
    copy = next((ROOT / "robustbench_ibn" / "reported").glob("paper-table1__resnet50.json"))
    (board / "reported" / copy.name).write_text(copy.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ValueError, match="the package ships it: delete your copy"):
        write_leaderboard(board)


# -- the docs page ----------------------------------------------------------------------------------------------
DOCS = ROOT / "docs" / "natural-shifts.md"


def _blocks(text: str, after: str) -> list[str]:
    section = text[text.index(after):]
    return re.findall(r"```[a-z]*\n(.*?)```", section, re.S)


@pytest.mark.slow
def test_the_docs_example_runs_here_and_prints_the_page_output(trees, capsys):
    """The page's run on the synthetic trees, run again: same rows, same tables, same headers."""
    text = DOCS.read_text(encoding="utf-8")
    build, command, shown = _blocks(text, "## An output made here")[:3]
    assert "python examples/synthetic_domains.py runs/natural" in build
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == "robust-eval"
    root = str(trees["val"].parent)
    code = main([a.replace("runs/natural", root) for a in argv[1:]])
    out, err = capsys.readouterr()
    assert code == 0, err

    def shape(report: str) -> list[str]:
        """Every line with its numbers and checksums masked (random-init numbers may differ in the last digit
        between machines; the rows, columns, headers and notes may not)."""
        masked = re.sub(r"-?\d+\.\d+", "#", report.replace(root, "runs/natural"))
        masked = re.sub(r"(sha256|fingerprint) [0-9a-f]+", r"\1 #", masked)
        return [re.sub(r"[ -]{2,}", " ", line).rstrip() for line in masked.splitlines()]

    assert shape(out.rstrip("\n")) == shape(shown.rstrip("\n"))

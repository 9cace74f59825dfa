"""Records and leaderboard entries that contradict themselves (issue 23, items 5-8): each once became a table, an
entry or a rank without a word, or a traceback. Every case is a tampered copy of a real record, made by a tiny run
here (a nearest-colour classifier on six shared images, so its errors and drops are not all equal), and every test
checks what the user is told.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import few_images
from robustbench_ibn.cli.eval import main as eval_main
from robustbench_ibn.cli.leaderboard import main as leaderboard_main
from robustbench_ibn.cli.report import main as report_main
from robustbench_ibn.data import DataConfig, ImageNetVal
from robustbench_ibn.leaderboard import save_entry
from robustbench_ibn.results import EvalResult

CONFIG = DataConfig(resize=32, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
PLUGIN = """
from torch import nn
from robustbench_ibn import DataConfig, ModelInfo, register_model

@register_model("tamper_probe", info=ModelInfo(name="tamper_probe", data_config=DataConfig(
    resize=32, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))))
def tamper_probe():
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000))
"""


def linear_weights(centres: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Logits ``-|x - centre|^2 + |x|^2`` for the classes of ``centres`` (x: the crop's mean colour), every other
    class far below and in a fixed order: the nearest centre wins, no ties."""
    weight = torch.zeros(1000, 3)
    bias = -10.0 - 1e-3 * torch.arange(1000, dtype=torch.float32)
    for label, centre in centres.items():
        weight[label], bias[label] = 2 * centre, -(centre ** 2).sum()
    return {"2.weight": weight, "2.bias": bias}


def run(capsys, main, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def probe(sample_val, tmp_path_factory) -> dict[str, Path]:
    """The run's inputs: the plug-in, six images of six classes, and trained-looking weights (a file, so the record
    has a sha256 and a leaderboard entry can be made)."""
    root = tmp_path_factory.mktemp("probe")
    (root / "probe.py").write_text(PLUGIN)
    val = few_images(sample_val, 6, root / "val")
    dataset = ImageNetVal(val, CONFIG)
    # Centres a little off each image's own colour: clean is mostly right, RGB+50 and std×1.5 move images across.
    centres = {label: dataset[i][0].float().div(255).mean(dim=(1, 2)) * 1.1 for i, (_, label) in
               enumerate(dataset.samples)}
    torch.save(linear_weights(centres), root / "probe.pth")
    return {"root": root, "plugin": root / "probe.py", "val": val, "weights": root / "probe.pth"}


def probe_args(probe: dict[str, Path], *more) -> list:
    return ["--plugin", probe["plugin"], "--model", "tamper_probe", "--weights", probe["weights"], "--data",
            probe["val"], "--transforms", "rgb+50,std1.5", "--workers", "0", "--no-progress", "--n-boot", "20", *more]


@pytest.fixture(scope="module")
def record(probe) -> dict:
    """The real record of the probe run, as robust-eval --output wrote it."""
    path = probe["root"] / "record.json"
    assert eval_main([str(a) for a in probe_args(probe, "--output", path)]) == 0
    record = json.loads(path.read_text())
    errors = [row["top1_err"] for row in record["results"]]
    assert len(set(errors)) == 3 and 0 < errors[0] < 100, errors  # three different numbers: a real probe
    return record


def write(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def same_name_digest(sha: str) -> str:
    """Another weights digest with the same first 12 digits, the part an entry's file name holds."""
    return sha[:12] + ("0" if sha[12] != "0" else "1") + sha[13:]


def tampered(record: dict, change) -> dict:
    copy = json.loads(json.dumps(record))
    change(copy)
    return copy


# -- 5. robust-report --save-entry recomputes what the record states -------------------------------------------
def _random_as_official(r: dict) -> None:
    r["weights"] = {"kind": "official", "location": "https://example.org/w.pth", "sha256": None, "seed": 0,
                    "description": "official https://example.org/w.pth"}


@pytest.mark.parametrize("change, field", [
    (lambda r: r["protocol"].update(fingerprint="0123456789abcdef"), "protocol.fingerprint"),
    (lambda r: r["sources"]["val"].update(sha256="ab" * 32), "sources['val'].sha256"),
    (lambda r: r["sources"]["val"].update(labels_sha256="cd" * 32), "sources['val'].labels_sha256"),
    (lambda r: r["results"][1].update(top1_err=r["results"][1]["top1_err"] - 10), "results[1].top1_err (rgb+50)"),
    (lambda r: r["results"][2].update(top1_drop=0.0), "results[2].top1_drop (std1.5)"),
    (lambda r: r["weights"].update(kind="random", seed=0), "weights.kind is 'random' (no file) while weights.sha256"),
    (_random_as_official, "weights.seed is 0: only a random init records a seed"),
    (lambda r: r["weights"].update(sha256="ef" * 32), "weights.description shows sha256"),
    (lambda r: r["weights"].update(sha256=None, description="file /w.pth"), "weights.sha256 is null"),
    (lambda r: r["weights"].update(description="RANDOM INIT (seed 0) - not pretrained"), "weights.description is"),
], ids=["fingerprint", "images-digest", "labels-digest", "error", "drop", "random-with-a-digest",
        "random-as-official", "another-file", "file-without-digest", "random-description"])
def test_a_record_whose_stated_identity_disagrees_with_its_data_is_refused(capsys, record, tmp_path, change, field):
    path = write(tmp_path / "r.json", tampered(record, change))
    code, out, err = run(capsys, report_main, path, "--save-entry", tmp_path / "board")
    assert code == 2 and out == "" and err.count("\n") == 1, err  # before: exit 0, an entry of what the file claimed
    assert err.startswith("robust-report: error: Expected ") and field in err and str(path) in err, err
    assert not (tmp_path / "board" / "measured").exists() or not list((tmp_path / "board" / "measured").iterdir())


def test_the_untampered_record_makes_its_entry(capsys, record, tmp_path):
    code, out, err = run(capsys, report_main, write(tmp_path / "r.json", record), "--save-entry", tmp_path / "b")
    assert code == 0, err
    (entry_file,) = (tmp_path / "b" / "measured").iterdir()
    entry = json.loads(entry_file.read_text())
    assert [r["top1_err"] for r in entry["results"]] == [r["top1_err"] for r in record["results"]]
    assert entry["protocol"]["fingerprint"] == record["protocol"]["fingerprint"]
    assert entry["weights"]["sha256"] == record["weights"]["sha256"] and entry["n"] == 6


def test_an_entry_of_another_run_is_never_overwritten(capsys, record, tmp_path):
    board = tmp_path / "board"
    ours = write(tmp_path / "ours.json", record)
    assert run(capsys, report_main, ours, "--save-entry", board)[0] == 0
    (entry_file,) = (board / "measured").iterdir()
    before = entry_file.read_text()
    # Another weights file whose digest shares the 12 digits the file name holds: the same file name.
    other = tampered(record, lambda r: r["weights"].update(sha256=same_name_digest(r["weights"]["sha256"])))
    theirs = write(tmp_path / "theirs.json", other)
    code, _, err = run(capsys, report_main, theirs, "--save-entry", board)
    assert code == 2 and "another run's: weights.sha256" in err and str(entry_file) in err, err
    assert entry_file.read_text() == before  # before: silently replaced by the other run's numbers
    assert run(capsys, report_main, ours, "--save-entry", board)[0] == 0  # the same run again replaces its own


def test_weights_without_a_digest_never_replace_an_entry(record, tmp_path):
    untracked = tampered(record, lambda r: r["weights"].update(
        kind="module", location=None, sha256=None, description="user-supplied nn.Module (weights not tracked)"))
    result = EvalResult.load(write(tmp_path / "m.json", untracked))
    path = save_entry(result, tmp_path / "board", n_boot=20)
    with pytest.raises(ValueError, match="weights without a digest cannot be told apart"):
        save_entry(result, tmp_path / "board", n_boot=20)  # two nn.Modules of one name would share this file
    assert path.is_file()


def test_robust_eval_names_the_way_out_of_a_failed_entry(capsys, probe, record, tmp_path):
    # An output that fails for another reason than a full disk: the advice is not to free space.
    board = tmp_path / "board"
    result = EvalResult.load(write(tmp_path / "r.json", record))
    entry_file = save_entry(result, board, n_boot=20)
    entry = json.loads(entry_file.read_text())
    entry["weights"]["sha256"] = same_name_digest(entry["weights"]["sha256"])
    write(entry_file, entry)
    code, _, err = run(capsys, eval_main, *probe_args(probe, "--save-entry", board, "--state-dir", tmp_path / "s"))
    assert code == 2 and "another run's" in err and "Fix what it names and run the same command again" in err, err
    assert "Free some space" not in err


# -- 6. robust-leaderboard refuses entries whose numbers contradict themselves --------------------------------------
@pytest.fixture(scope="module")
def entry(record, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("entry")
    path = save_entry(EvalResult.load(write(folder / "r.json", record)), folder / "board", n_boot=20)
    return json.loads(path.read_text())


def board_with(tmp_path: Path, *entries: dict) -> list[Path]:
    return [write(tmp_path / "board" / "measured" / f"e{i}.json", e) for i, e in enumerate(entries)]


@pytest.mark.parametrize("change, field", [
    (lambda e: e["mean_drop"].update(top1=e["mean_drop"]["top1"] - 5), "Expected mean_drop.top1 to be the mean"),
    (lambda e: e["results"][1].update(top1_err=120.0, top1_drop=120.0 - e["results"][0]["top1_err"]),
     "Expected results[1] (rgb+50).top1_err to be a number in [0, 100]"),
    (lambda e: e["results"][0].update(top5_err=-1.0),
     "Expected results[0] (clean).top5_err to be a number in [0, 100]"),
    (lambda e: e["results"][1].update(top1_drop=e["results"][1]["top1_drop"] + 3),
     "Expected results[1] (rgb+50).top1_drop to be top1_err - the clean top1_err"),
    (lambda e: e["results"][2].update(top5_err=e["results"][2]["top1_err"] + 1,
                                      top5_drop=e["results"][2]["top1_err"] + 1 - e["results"][0]["top5_err"]),
     "Expected results[2] (std1.5).top5_err to be at most its top1_err"),
    (lambda e: e["results"][1].update(top1_err_ci=[50.0, 40.0]), "Expected results[1] (rgb+50).top1_err_ci"),
    (lambda e: e.update(n=600), "Expected protocol.dataset.n to be the entry's n, 600"),
    (lambda e: (e.update(n=600), e["protocol"]["dataset"].update(n=600)), "Expected results[0] (clean).n to be the "
                                                                          "number of images of its source"),
    (lambda e: e.update(weights_id="0123456789ab"), "Expected weights_id to be"),
    (lambda e: e["weights"].update(kind="official", seed=3), "weights.seed is 3: only a random init records a seed"),
], ids=["mean-drop", "error-above-100", "error-below-0", "drop", "top5-above-top1", "interval-reversed", "n",
        "n-and-dataset-n", "weights-id", "weights-seed"])
def test_an_entry_that_contradicts_itself_is_refused_naming_file_and_field(capsys, entry, tmp_path, change, field):
    (path,) = board_with(tmp_path, tampered(entry, change))
    code, _, err = run(capsys, leaderboard_main, tmp_path / "board")
    assert code == 2 and err.count("\n") == 1, err  # before: ranked (by the edited mean drop, or showing 120%)
    assert err.startswith("robust-leaderboard: error: ") and field in err and str(path) in err, err


def test_the_same_weights_twice_in_one_protocol_are_refused(capsys, entry, tmp_path):
    renamed = tampered(entry, lambda e: e.update(model="tamper_probe_v2", display_name="tamper_probe_v2"))
    first, second = board_with(tmp_path, entry, renamed)
    code, _, err = run(capsys, leaderboard_main, tmp_path / "board")
    assert code == 2 and f"entries {first} and {second} both have weights.sha256" in err, err


# -- 7. numbers no float can hold, and fields of the wrong type: error lines, not tracebacks -------------------------
@pytest.mark.parametrize("change, field", [
    (lambda e: e["results"][1].update(top1_err=10**400), "results[1].top1_err is an integer of 401 digits"),
    (lambda e: e["results"][2].update(top5_drop=-10**400), "results[2].top5_drop is an integer of 401 digits"),
    (lambda e: e["mean_drop"].update(top1=10**400), "mean_drop.top1 is an integer of 401 digits"),
    (lambda e: e["protocol"].update(fast="yes"), "Expected protocol.fast to be null (the exact path) or an object"),
], ids=["error", "drop", "mean-drop", "fast-a-string"])
def test_a_hostile_number_in_an_entry_is_an_error_line(capsys, entry, tmp_path, change, field):
    (path,) = board_with(tmp_path, tampered(entry, change))
    code, _, err = run(capsys, leaderboard_main, tmp_path / "board")  # before: OverflowError, AttributeError
    assert code == 2 and field in err and str(path) in err, err


@pytest.mark.parametrize("change, field", [
    (lambda r: r["domains"][1]["shift"]["severity"].update(value=10**400),
     "domains[1].shift.severity.value is an integer of 401 digits"),
    (lambda r: r["domains"][2]["shift"]["severity"].update(identity=-10**400),
     "domains[2].shift.severity.identity is an integer of 401 digits"),
    (lambda r: r["sources"]["val"].update(limit=10**400), "sources.val.limit is an integer of 401 digits"),
    (lambda r: r["protocol"].update(fast="yes"), "Expected protocol.fast to be null (the exact path) or an object"),
    (lambda r: r["protocol"].update(fast={"fold_batchnorm": "true", "compiled": False}), "Expected protocol.fast"),
    (lambda r: r["protocol"].update(version=True), "Expected protocol.version to be an integer"),
    (lambda r: r["data_config"].update(crop=True), "Expected data_config.crop to be an integer"),
    (lambda r: r.update(tied={"clean": False}), "Expected 'tied' to be an object of domain name -> number"),
], ids=["severity", "identity", "limit", "fast-a-string", "fast-field-a-string", "version-a-bool", "crop-a-bool",
        "tied-a-bool"])
def test_a_hostile_number_in_a_record_is_an_error_line(capsys, record, tmp_path, change, field):
    path = write(tmp_path / "r.json", tampered(record, change))
    code, out, err = run(capsys, report_main, path)  # before: OverflowError, AttributeError tracebacks
    assert code == 2 and out == "" and field in err and str(path) in err, err


# -- 8. ImageNet-C errors below 1% are percent: the record says so ---------------------------------------------------
@pytest.fixture(scope="module")
def perfect(probe, sample_val, tmp_path_factory) -> dict[str, Path]:
    """One class, its images in val and in a 2-corruption ImageNet-C tree, and weights that always say that class:
    every error of the run is 0%."""
    root = tmp_path_factory.mktemp("perfect")
    wnid = sorted(p.name for p in sample_val.iterdir())[0]
    val = few_images(sample_val, 1, root / "val")
    for corruption in ("gaussian_noise", "fog"):
        folder = root / "imagenet-c" / corruption / "1" / wnid
        folder.mkdir(parents=True)
        for image in (val / wnid).iterdir():
            (folder / image.name).symlink_to(image.resolve())
    state = linear_weights({})
    state["2.bias"][0] = 10.0  # class 0 (the first wnid) above every other class for any image
    torch.save(state, root / "always0.pth")
    return {"val": val, "tree": root / "imagenet-c", "weights": root / "always0.pth", "root": root}


def test_imagenet_c_errors_below_one_percent_are_reported_as_percent(capsys, probe, perfect):
    record = perfect["root"] / "c.json"
    code, out, err = run(capsys, eval_main, "--plugin", probe["plugin"], "--model", "tamper_probe", "--weights",
                         perfect["weights"], "--data", perfect["val"], "--transforms", "none", "--domain",
                         f"imagenet-c={perfect['tree']}", "--workers", "0", "--no-progress", "--n-boot", "20",
                         "--output", record)
    assert code == 0, err  # before: refused as "fractions", with the advice to free some space
    assert "| ImageNet-C mCE | mCE 0.00, relative 0.00 (partial) |" in out, out
    code, out, err = run(capsys, report_main, record, "--format", "json")
    assert code == 0, err
    (tree,) = json.loads(out)["imagenet_c"]
    assert tree["mce"] == 0.0 and tree["mean_error"] == {"gaussian_noise": 0.0, "fog": 0.0}
    assert np.isclose(tree["relative_mce"], 0.0)
    # Its leaderboard entry's mCE column is what the sets' rows give: an edited one is refused.
    path = save_entry(EvalResult.load(record), perfect["root"] / "board", n_boot=20)
    entry = json.loads(path.read_text())
    assert entry["corruption"]["imagenet-c"]["mce"] == 0.0
    entry["corruption"]["imagenet-c"]["mce"] = 50.0
    write(path, entry)
    code, _, err = run(capsys, leaderboard_main, perfect["root"] / "board")
    assert code == 2 and "Expected corruption['imagenet-c'].mce to be 0.0 (from the rows of its sets)" in err, err

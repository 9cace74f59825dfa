"""robust-eval end to end on a few real images, and its errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import few_images
from robustbench_ibn.cli._common import parse_kwargs
from robustbench_ibn.results import PROTOCOL_VERSION
from robustbench_ibn.cli.eval import main
from robustbench_ibn.results import EvalResult

ARGS = ["--model", "resnet18_ibn_b", "--weights", "random", "--transforms", "rgb+50,r+50,std1.5",
        "--batch-size", "3", "--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def data(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 4, tmp_path_factory.mktemp("val"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_markdown_table_1_layout(capsys, data):
    code, out, err = run(capsys, *ARGS, "--data", str(data))
    assert code == 0, err
    assert "model: resnet18_ibn_b" in out
    assert re.search(r"weights: !!! RANDOM INIT \(seed 0\)", out)
    assert "data: ImageNet val" in out and "4 images" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "transform" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["origin", "RGB+50", "R+50", "std×1.5"]
    assert re.fullmatch(r"\d+\.\d\d/\d+\.\d\d", rows[0].split("|")[2].strip())
    for row in rows[1:]:
        assert re.fullmatch(r"\d+\.\d\d/\d+\.\d\d \(-?\d+\.\d\d/-?\d+\.\d\d\)", row.split("|")[2].strip())
    assert "done in" in err


def test_json_fields_drops_and_record(capsys, data, tmp_path):
    record_path = tmp_path / "out" / "r.json"
    code, out, _ = run(capsys, *ARGS, "--data", str(data), "--format", "json", "--output", str(record_path))
    assert code == 0
    printed = json.loads(out)
    results = printed["results"]
    assert [r["transform"] for r in results] == ["clean", "rgb+50", "r+50", "std1.5"]
    assert [r["label"] for r in results] == ["origin", "RGB+50", "R+50", "std×1.5"]
    clean = results[0]
    assert clean["top1_drop"] == 0 and clean["top5_drop"] == 0
    for r in results:
        assert r["n"] == 4 and isinstance(r["top1_err"], float)
        assert r["top1_drop"] == pytest.approx(r["top1_err"] - clean["top1_err"])
        assert r["top5_drop"] == pytest.approx(r["top5_err"] - clean["top5_err"])
    assert printed["weights"]["kind"] == "random"

    record = json.loads(record_path.read_text())
    for key in ("schema_version", "model", "weights", "data_config", "sources", "domains", "protocol", "environment",
                "results", "predictions"):
        assert key in record
    assert record["schema_version"] == 2 and record["protocol"]["version"] == PROTOCOL_VERSION == 4
    val = record["sources"]["val"]
    assert val["n"] == 4 and len(val["sha256"]) == 64 and len(val["labels"]) == 4 and len(val["images"]) == 4
    assert val["kind"] == "imagenet-val" and val["label_space"] == {"kind": "imagenet-1k", "name": "imagenet-1k",
                                                                     "policy": "full"}
    assert [d["name"] for d in record["domains"]] == ["clean", "rgb+50", "r+50", "std1.5"]
    assert record["domains"][0]["shift"] is None and record["domains"][3]["shift"]["version"] == 2
    assert record["data_config"]["crop"] == 224 and record["tied"] == {"clean": 0, "rgb+50": 0, "r+50": 0, "std1.5": 0}
    assert record["environment"]["versions"]["torch"] == torch.__version__
    assert {"date", "duration_s", "device"} <= set(record["environment"])
    assert all(len(p) == 5 for p in record["predictions"]["std1.5"])
    # The record alone reproduces the table: errors are recomputed from the stored predictions.
    reloaded = EvalResult.load(record_path)
    assert [r.to_dict() for r in reloaded.results] == results


def test_latex_and_csv(capsys, data):
    code, out, _ = run(capsys, *ARGS, "--data", str(data), "--format", "latex")
    assert code == 0 and r"\toprule" in out and r"std$\times$1.5 &" in out and r"resnet18\_ibn\_b" in out
    code, out, _ = run(capsys, *ARGS, "--data", str(data), "--format", "csv")
    frame = pd.read_csv(__import__("io").StringIO(out.split("done in")[0]))
    assert list(frame["transform"]) == ["clean", "rgb+50", "r+50", "std1.5"]
    assert (frame["top1_drop"] - (frame["top1_err"] - frame["top1_err"][0])).abs().max() < 1e-3


def test_limit_is_reported(capsys, sample_val):
    code, out, _ = run(capsys, *ARGS, "--data", str(sample_val), "--limit", "3", "--transforms", "std1.5")
    assert code == 0 and "class-balanced subset (limit 3 of 500)" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "resnet50_ibn", "--transforms", "std2"], "Did you mean: resnet50_ibn_d, resnet50_ibn_c, resnet50_"),
        (["--model", "resnet18_ibn_b", "--transforms", "rgb+5O"], "Unknown transform 'rgb+5O'"),
        (["--model", "resnet18_ibn_b", "--transforms", "all"], "--transforms rgb+50,r+50,std1.5"),
        (["--model", "resnet152_ibn_a", "--transforms", "std2"], "has no published weights"),
        (["--model", "resnet18_ibn_b", "--transforms", "std2", "--weights", "/nonexistent/ckpt.pth"],
         "/nonexistent/ckpt.pth"),
        (["--model", "resnet18_ibn_b", "--transforms", "std2", "--precision", "fp16", "--device", "cpu"], "fp16"),
    ],
)
def test_errors_name_the_problem(capsys, data, argv, message):
    code, out, err = run(capsys, *argv, "--data", str(data), "--workers", "0", "--no-progress")
    assert code == 2 and out == ""
    assert message in err and err.startswith("robust-eval: error:")


def test_bad_checkpoint_lists_keys(capsys, data, tmp_path):
    ckpt = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "extra.weight": torch.zeros(1)}, ckpt)
    code, _, err = run(capsys, *ARGS, "--data", str(data), "--weights", str(ckpt))
    assert code == 2 and "extra.weight" in err and "layer1.0.conv1.weight" in err and str(ckpt) in err


@pytest.mark.parametrize("make", ["missing", "empty", "wrong"])
def test_data_folder_errors(capsys, tmp_path, make):
    root = tmp_path / "val"
    if make != "missing":
        root.mkdir()
    if make == "wrong":
        (root / "not_a_class").mkdir()
        (root / "not_a_class" / "x.JPEG").write_bytes(b"")
    code, _, err = run(capsys, *ARGS, "--data", str(root))
    assert code == 2 and str(root) in err
    if make != "wrong":
        assert "ImageFolder" in err  # says which layouts are accepted


def test_data_from_environment(capsys, data, monkeypatch):
    monkeypatch.setenv("ROBUSTBENCH_IBN_DATA", str(data))
    code, out, _ = run(capsys, *ARGS, "--transforms", "std1.5")
    assert code == 0 and str(data.name) in out


def test_missing_data_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.delenv("ROBUSTBENCH_IBN_DATA", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["--model", "resnet18"])
    assert info.value.code == 2 and "ROBUSTBENCH_IBN_DATA" in capsys.readouterr().err


def test_console_script_lists_registries():
    exe = Path(sys.executable).with_name("robust-eval")
    out = subprocess.run([str(exe), "--list-models", "resnet50*"], capture_output=True, text=True, check=True).stdout
    assert [line.split()[0] for line in out.splitlines()] == [
        "resnet50", "resnet50_ibn_a", "resnet50_ibn_a2", "resnet50_ibn_ad", "resnet50_ibn_b", "resnet50_ibn_c",
        "resnet50_ibn_d"]
    assert "9ca61e85" in out and "22.54/6.32" in out
    out = subprocess.run([str(exe), "--list-transforms"], capture_output=True, text=True, check=True).stdout
    assert "std×1.5" in out and "rgb+{k}" in out and "monet" in out


def test_parse_kwargs():
    assert parse_kwargs("in_ratio=0.25,ibn_cfg=('a',None,None,None),name=x") == {
        "in_ratio": 0.25, "ibn_cfg": ("a", None, None, None), "name": "x"}
    with pytest.raises(Exception, match="key=value"):
        parse_kwargs("oops")

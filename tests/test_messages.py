"""Messages worded for where they were raised (flags on the command line, keywords in Python), and the messages
that used to leave a user stuck, each with its next step (issue 17)."""

from __future__ import annotations

import io
import shutil
import sys
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import few_images
from robustbench_ibn import create_model, create_transform, evaluate
from robustbench_ibn import env as env_module
from robustbench_ibn.cli import cache as cache_cli
from robustbench_ibn.cli import divergence as divergence_cli
from robustbench_ibn.cli import eval as eval_cli
from robustbench_ibn.cli import report as report_cli
from robustbench_ibn.data import DataError, ImageNetVal
from robustbench_ibn.divergence import feature_divergence
from robustbench_ibn.engine import RunConfig
from robustbench_ibn.hub import WeightsError
from robustbench_ibn.options import command_line, option
from robustbench_ibn.stylecache import StyleCache, cache_info
from robustbench_ibn.transforms import TransformError

FAST = ["--workers", "0", "--no-progress", "--batch-size", "2"]


@pytest.fixture(scope="module")
def data(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 2, tmp_path_factory.mktemp("val"))


def cli(capsys, main, *argv: str) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


# -- one message source, two wordings ---------------------------------------------------------------------------
def test_option_names_the_flag_inside_command_line_only():
    assert option("weights", "random") == "weights='random'" and option("labels_file", "FILE") == "labels_file=FILE"
    with command_line():
        assert option("weights", "random") == "--weights random" and option("labels_file", "FILE") == "--labels FILE"
        assert option("transform_weights", ("monet", "x.pth")) == "--transform-weights monet=x.pth"
    assert option("transform_weights", ("monet", "x.pth")) == "transform_weights={'monet': 'x.pth'}"
    with pytest.raises(KeyError, match="'weigths'"):
        option("weigths")


def test_no_published_weights_python_then_command_line(capsys, data):
    with pytest.raises(WeightsError) as err:
        create_model("resnet152_ibn_a")
    assert "pass weights=PATH for your own checkpoint or weights='random' for an explicit random init" in str(err.value)
    code, _, stderr = cli(capsys, eval_cli.main, "--model", "resnet152_ibn_a", "--transforms", "rgb+50",
                          "--data", data, *FAST)
    assert code == 2
    assert "pass --weights PATH for your own checkpoint or --weights random for an explicit random init" in stderr


def test_missing_labels_file_python_then_command_line(capsys, sample_val, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in sorted(sample_val.glob("*/*.JPEG"))[:2]:
        shutil.copy(image, flat / image.name)
    with pytest.raises(DataError) as err:
        ImageNetVal(flat)
    assert "Pass labels_file=FILE, or sort the images" in str(err.value)
    assert "or passed explicitly as labels_file=FILE." in str(err.value)
    code, _, stderr = cli(capsys, eval_cli.main, "--model", "resnet18_ibn_b", "--weights", "random",
                          "--transforms", "rgb+50", "--data", flat, *FAST)
    assert code == 2 and "Pass --labels FILE, or sort the images" in stderr and "labels_file=" not in stderr
    with pytest.raises(DataError, match=r"labels_file='.*' was given but .* drop labels_file= or use a flat folder"):
        ImageNetVal(sample_val, labels_file=tmp_path / "labels.txt")


def test_missing_shift_weights_python_then_command_line(capsys, data, tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(TransformError, match=rf"transform_weights=\{{'monet': '{missing}'\}}: no such file"):
        create_transform("monet", weights=str(missing), cache_dir=tmp_path).prepare(progress=False)
    code, _, stderr = cli(capsys, eval_cli.main, "--model", "resnet18_ibn_b", "--weights", "random", "--transforms",
                          "monet", "--transform-weights", f"monet={missing}", "--data", data, *FAST)
    assert code == 2 and f"--transform-weights monet={missing}: no such file" in stderr


# -- messages with a next step ----------------------------------------------------------------------------------
OFFLINE = "It looks like there is no internet connection and the repo could not be found in the cache (/x/hub)"


def test_hub_repository_offline_says_how_to_get_it(monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError(OFFLINE)

    monkeypatch.setattr(torch.hub, "load", offline)
    with pytest.raises(RuntimeError) as err:
        create_model("hub:XingangPan/IBN-Net:resnet50_ibn_a", weights="random")
    message = str(err.value)
    assert message.startswith("hub:XingangPan/IBN-Net:resnet50_ibn_a: cannot fetch XingangPan/IBN-Net from GitHub")
    assert OFFLINE in message and "git clone https://github.com/XingangPan/IBN-Net" in message
    assert "hub:/path/to/IBN-Net:resnet50_ibn_a" in message

    def unknown(*args, **kwargs):  # a repository GitHub does not have
        raise urllib.error.HTTPError("https://github.com/x/y", 404, "Not Found", {}, io.BytesIO())

    monkeypatch.setattr(torch.hub, "load", unknown)
    with pytest.raises(RuntimeError, match="cannot fetch x/y from GitHub .*404.* Check the spelling of OWNER/REPO"):
        create_model("hub:x/y:net", weights="random")

    def broken_entry(*args, **kwargs):  # the entry's own error is not a network problem: it passes unchanged
        raise RuntimeError("size mismatch in the entry's code")

    monkeypatch.setattr(torch.hub, "load", broken_entry)
    with pytest.raises(RuntimeError, match=r"^size mismatch in the entry's code$"):
        create_model("hub:x/y:net", weights="random")


def test_report_of_a_missing_record_names_it_and_how_to_write_one(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, report_cli.main, "missing.json")
    assert code == 2 and out == ""
    assert err == (f"robust-report: error: Expected result records written by robust-eval --output, but missing.json "
                   f"does not exist (in {tmp_path}). Check the path, or write the record first: robust-eval --model "
                   f"NAME --data DIR --output missing.json\n")
    code, _, err = cli(capsys, report_cli.main, "a.json", "b.json")
    assert code == 2 and "but a.json, b.json do not exist" in err and "[Errno 2]" not in err


def test_a_missing_json_file_is_named_with_where_it_was_looked_for(tmp_path):
    from robustbench_ibn.results import EvalResult

    with pytest.raises(FileNotFoundError) as err:
        EvalResult.load(tmp_path / "nope.json")
    assert str(err.value) == (f"Expected a JSON result record (robust-eval --output) at {tmp_path / 'nope.json'}, "
                              f"but there is no such file ({tmp_path / 'nope.json'}).")


def test_divergence_of_uncalibrated_random_weights_says_it_is_degenerate(capsys, data):
    with pytest.warns(UserWarning, match=r"the result is degenerate.* Add calibrate=64 to calibrate"):
        frame = feature_divergence("resnet18", data, "clean,rgb+50", layers=["relu"], weights="random", workers=0,
                                   progress=False, limit=2)
    assert frame["divergence"].notna().all()
    code, out, err = cli(capsys, divergence_cli.main, "--model", "resnet18", "--weights", "random", "--domains",
                         "clean,rgb+50", "--layers", "relu", "--data", data, "--limit", "2", *FAST)
    assert code == 0, err
    assert err.startswith("robust-divergence: warning: Random-init weights without calibration: the result is "
                          "degenerate.") and "Add --calibrate 64 to calibrate" in err
    assert "calibration: none. Random-init weights without calibration" in out  # the table says it too


@pytest.fixture
def style_cache(tmp_path) -> Path:
    StyleCache("monet-test", {"style": "monet"}, tmp_path).put("ab" * 32, np.full((8, 8, 3), 7, dtype=np.uint8))
    return tmp_path


def test_cache_clear_refuses_without_a_terminal_or_yes(capsys, style_cache, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal: nobody to ask
    code, out, err = cli(capsys, cache_cli.main, "--dir", style_cache, "clear")
    assert code == 2 and out == ""
    assert "clear would delete 1 namespace(s) under" in err and "(monet-test: 1 crops," in err
    assert "stdin is not a terminal to ask for confirmation: add --yes to delete without asking." in err
    assert [ns.name for ns in cache_info(style_cache)] == ["monet-test"]
    code, out, _ = cli(capsys, cache_cli.main, "--dir", style_cache, "clear", "--yes")
    assert code == 0 and "cleared 1 namespace(s)" in out and cache_info(style_cache) == []


@pytest.mark.parametrize("answer, deleted", [("n\n", False), ("\n", False), ("y\n", True), ("yes\n", True)])
def test_cache_clear_asks_on_a_terminal(capsys, style_cache, monkeypatch, answer, deleted):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    code, out, _ = cli(capsys, cache_cli.main, "--dir", style_cache, "clear", "monet")
    assert out.startswith("Delete 1 namespace(s) under ") and "[y/N]" in out
    assert (code, "cleared 1" in out, cache_info(style_cache) == []) == ((0, True, True) if deleted else (1, False, False))


# -- bf16 on a CPU without native bf16 ---------------------------------------------------------------------------
AVX2_ONLY = "processor\t: 0\nmodel name\t: an AVX2 CPU\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16\n"


@pytest.mark.parametrize("cpuinfo, native", [(AVX2_ONLY, False), (AVX512_BF16, True), (ARM_BF16, True), (None, None)])
def test_native_bf16_from_cpuinfo(tmp_path, monkeypatch, cpuinfo, native):
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    monkeypatch.setattr(env_module, "CPUINFO", path)
    assert env_module.cpu_has_native_bf16() is native
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RunConfig(precision="bf16", device="cpu")
        RunConfig(precision="fp32", device="cpu")
    assert [str(w.message).split(" on a CPU")[0] for w in caught] == (["precision='bf16'"] if native is False else [])


def test_bf16_warning_names_the_flag_on_the_command_line(tmp_path, monkeypatch, capsys, data):
    (tmp_path / "cpuinfo").write_text(AVX2_ONLY)
    monkeypatch.setattr(env_module, "CPUINFO", tmp_path / "cpuinfo")
    code, _, err = cli(capsys, eval_cli.main, "--model", "resnet18_ibn_b", "--weights", "random", "--transforms",
                       "rgb+50", "--precision", "bf16", "--limit", "2", "--data", data, *FAST)
    assert code == 0, err
    assert err.startswith("robust-eval: warning: --precision bf16 on a CPU without native bf16 (no avx512_bf16 or "
                          f"amx_bf16 in {tmp_path / 'cpuinfo'}): bf16 is emulated there and usually slower than fp32")
    assert "Use --precision fp32 unless you have measured otherwise." in err


def test_evaluate_keeps_python_wording(data):
    with pytest.raises(ValueError, match=r"^Expected device= to be auto, cpu, cuda, cuda:N or mps, but got 'cuda:x'"):
        evaluate("resnet18_ibn_b", data, "rgb+50", weights="random", device="cuda:x")

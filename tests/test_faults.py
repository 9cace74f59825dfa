"""Faults, each made to happen: bad images, bad weights, interrupted and concurrent runs, full disks,
misbehaving plug-ins, wrong arguments and untrusted files. Every test checks what the user is told.

Cases already covered elsewhere (not repeated here): tests/test_data.py (missing folder, empty folder, unknown
wnid folder, bad labels line, CMYK decode, corrupt image named by ``load_rgb``), tests/test_weights.py (truncated
and corrupt checkpoints, a non-weights-only pickle, hash mismatch with nothing cached, a corrupt cached file),
tests/test_scale.py (SIGKILL then resume equals an uninterrupted run; two RunStates on one directory refused),
tests/test_plugins.py (shifts that raise, return NaN, the wrong shape, dtype or range) and tests/test_runner.py
(NaN logits, CUDA out of memory).
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import few_images
from robustbench_ibn import evaluate, plugins
from robustbench_ibn import data as data_module
from robustbench_ibn import files as files_module
from robustbench_ibn import hub as hub_module
from robustbench_ibn.cli.eval import main
from robustbench_ibn.cli.report import main as report_main
from robustbench_ibn.data import DataError
from robustbench_ibn.leaderboard import LeaderboardError, load_entries, save_entry
from robustbench_ibn.models import MODELS, create_model
from robustbench_ibn.hub import WeightsError, cached_download
from robustbench_ibn.files import atomic_write_text
from robustbench_ibn.results import EvalResult
from robustbench_ibn.stylecache import StyleCache
from robustbench_ibn.transforms import TRANSFORMS

BIN = Path(sys.executable).parent
FAST = ["--model", "resnet18_ibn_b", "--weights", "random", "--workers", "0"]


@pytest.fixture(scope="module")
def data(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 4, tmp_path_factory.mktemp("val"))


def run(capsys, *argv: object) -> tuple[int, str, str]:
    """``robust-eval`` in-process: (exit code, stdout, stderr); argparse's usage errors count as code 2."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".download"))]


# -- data ----------------------------------------------------------------------------------------------
@pytest.fixture
def bad_data(sample_val, tmp_path) -> Path:
    """Six classes: a good JPEG, a truncated JPEG, an empty file, text named .JPEG, an RGBA PNG, a CMYK JPEG."""
    root = tmp_path / "bad"
    sources = sorted(sample_val.glob("*/*.JPEG"))[:6]
    for i, src in enumerate(sources):
        folder = root / src.parent.name
        folder.mkdir(parents=True)
        raw = src.read_bytes()
        if i == 0:
            (folder / "good.JPEG").write_bytes(raw)
        elif i == 1:
            (folder / "truncated.JPEG").write_bytes(raw[: len(raw) // 2])
        elif i == 2:
            (folder / "empty.JPEG").write_bytes(b"")
        elif i == 3:
            (folder / "text.JPEG").write_text("<html>a page saved under an image name</html>")
        elif i == 4:
            Image.open(src).convert("RGBA").save(folder / "alpha.png")
        else:
            Image.open(src).convert("CMYK").save(folder / "cmyk.JPEG")
    return root


BAD = {"truncated.JPEG": "image file is truncated", "empty.JPEG": "empty file (0 bytes)",
       "text.JPEG": "not an image (no image format PIL can read)"}


def test_error_names_every_bad_image_and_keeps_the_good_batches(capsys, bad_data, sample_val, tmp_path):
    state = tmp_path / "state"
    argv = [*FAST, "--transforms", "std1.5", "--data", bad_data, "--batch-size", "2", "--state-dir", state]
    code, out, err = run(capsys, *argv, "--no-progress")
    assert code == 2 and out == ""
    message = err.split("robust-eval: error: ", 1)[1]
    assert message.startswith("3 of the 6 images cannot be decoded:")
    for name, reason in BAD.items():  # every bad file, not just the first, each with its reason
        assert re.search(rf"\n  {re.escape(str(bad_data))}/n\d+/{re.escape(name)}: .*{re.escape(reason)}", message)
    assert "alpha.png" not in message and "cmyk.JPEG" not in message  # PNG and CMYK decode fine
    assert "Replace these files with good copies and run the same command again" in message
    assert "--on-bad-image skip" in message
    # Only the batch of the PNG and the CMYK JPEG is whole: it is saved, the other two are not.
    assert len(list(state.glob("*/batch-*.npz"))) == 1
    # Replaced by good copies, the same command evaluates only the two unsaved batches.
    sources = sorted(sample_val.glob("*/*.JPEG"))
    for name in BAD:
        bad = next(bad_data.glob(f"*/{name}"))
        bad.write_bytes(next(s for s in sources if s.parent.name == bad.parent.name).read_bytes())
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "resuming, 2 of 6 images already done" in err and "6 images" in out and "skipped" not in out


def test_skip_leaves_bad_images_out_and_records_which(capsys, bad_data, tmp_path):
    record = tmp_path / "skip.json"
    code, out, err = run(capsys, *FAST, "--transforms", "std1.5", "--data", bad_data, "--batch-size", "2",
                         "--no-progress", "--on-bad-image", "skip", "--output", record)
    assert code == 0, err
    for name in BAD:
        assert re.search(rf"skipping .*/{re.escape(name)}, which cannot be decoded: ", err)
    header = next(line for line in out.splitlines() if line.startswith("data: "))
    assert "3 images, 3 classes" in header and "3 unreadable images skipped (" in header  # the table says n
    saved = json.loads(record.read_text())
    val = saved["sources"]["val"]
    assert val["n"] == 3 and [r["n"] for r in saved["results"]] == [3, 3]
    assert sorted(Path(s["image"]).name for s in val["skipped"]) == sorted(BAD)
    assert all(s["error"] for s in val["skipped"])
    assert [Path(i).name for i in val["images"]] == ["good.JPEG", "alpha.png", "cmyk.JPEG"]
    result = EvalResult.load(record)
    assert len(result.labels) == 3 and result.dataset["skipped"] == val["skipped"]
    # Another image set is another protocol: the fingerprint is that of the 3 images evaluated.
    whole = evaluate("resnet18_ibn_b", bad_data, "std1.5", weights="random", workers=0, progress=False,
                     on_bad_image="skip", limit=3)
    assert whole.protocol["fingerprint"] != result.protocol["fingerprint"]


def test_an_unreadable_file_is_named(monkeypatch, bad_data):
    # Tests run as root here, and root reads a chmod 000 file anyway: the refusal is simulated by an open()
    # that raises PermissionError for one file (test_a_chmod_000_file_is_named does it for real as non-root).
    locked = next(bad_data.glob("*/cmyk.JPEG"))
    real_open = open

    def guarded_open(path, *args, **kwargs):
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(data_module, "open", guarded_open, raising=False)
    with pytest.raises(DataError) as info:
        evaluate("resnet18_ibn_b", bad_data, "std1.5", weights="random", workers=0, progress=False, batch_size=6)
    assert f"  {locked}: PermissionError: [Errno 13] Permission denied" in str(info.value)
    assert "4 of the 6 images cannot be decoded" in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads a chmod 000 file")
def test_a_chmod_000_file_is_named(bad_data):
    locked = next(bad_data.glob("*/cmyk.JPEG"))
    locked.chmod(0)
    with pytest.raises(DataError, match=re.escape(f"  {locked}: PermissionError")):
        evaluate("resnet18_ibn_b", bad_data, "std1.5", weights="random", workers=0, progress=False)


def test_nothing_is_executed_from_a_data_folder(capsys, data, tmp_path, monkeypatch):
    root = tmp_path / "val"
    root.mkdir()
    for folder in data.iterdir():
        (root / folder.name).symlink_to(folder.resolve())
    marker = tmp_path / "executed"
    code = f"open({str(marker)!r}, 'w').write(__name__)\n"
    for name in ("hubconf.py", "__init__.py", "sitecustomize.py", "robustbench_ibn_plugin.py", "conftest.py"):
        (root / name).write_text(code)
    (root / "labels.txt").write_text(f"__import__('os').system('touch {marker}') 1\n")
    monkeypatch.chdir(root)  # the data folder as working directory too
    code_, out, err = run(capsys, *FAST, "--transforms", "std1.5", "--data", root, "--no-progress")
    assert code_ == 0, err
    assert not marker.exists() and "4 images" in out


# -- weights -------------------------------------------------------------------------------------------
def cache_files() -> list[str]:
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("name", ["weights.pth", "weights-0a1b2c3d.pth"], ids=["no-hash", "hash-in-name"])
def test_a_download_that_returns_an_html_page_is_refused_and_not_cached(local_server, name):
    server, root = local_server
    (root / name).write_text("<!DOCTYPE html>\n<html><body>Please sign in to download</body></html>\n")
    with pytest.raises(WeightsError) as info:
        create_model("resnet18_ibn_b", weights=server.url(name))
    message = str(info.value)
    assert f"{server.url(name)} sent an HTML page, not the file" in message
    assert "nothing cached" in message and f"weights='/path/to/{name}'" in message
    assert cache_files() == []


def test_a_cut_off_download_is_refused_and_not_cached(local_server, tmp_path):
    server, root = local_server
    torch.save({"w": torch.zeros(1000)}, tmp_path / "whole.pth")
    (root / "cut.pth").write_bytes((tmp_path / "whole.pth").read_bytes()[:-200])
    with pytest.raises(WeightsError, match=r"sent an incomplete zip archive \(the download was cut off\)"):
        cached_download(server.url("cut.pth"), None, progress=False)
    assert cache_files() == []


def test_a_full_disk_during_a_download_caches_nothing_and_keeps_other_files(monkeypatch):
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "other-12345678.pth").write_bytes(b"an earlier download")

    def full_disk(url, dst, progress=True, timeout=None):
        Path(dst).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hub_module, "_download", full_disk)
    with pytest.raises(WeightsError, match=r"could not download http://127\.0\.0\.1:9/net\.pth: .*No space left"):
        cached_download("http://127.0.0.1:9/net.pth", None, progress=False)
    assert cache_files() == ["other-12345678.pth"]
    assert (cache / "other-12345678.pth").read_bytes() == b"an earlier download"


def test_a_checkpoint_of_another_architecture_lists_the_keys(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(create_model("resnet18", weights="random").state_dict(), path)
    with pytest.raises(WeightsError) as info:
        create_model("resnet50_ibn_a", weights=str(path))
    message = str(info.value)
    assert message.startswith(f"{path} does not fit resnet50_ibn_a: ")
    assert re.search(r"\d+ missing, \d+ unexpected, [1-9]\d* mis-shaped key", message)
    assert "layer1.0.conv3.weight" in message  # in ResNet-50's bottleneck, not in ResNet-18's basic block
    assert "mis-shaped: " in message and "Check the model name" in message


# -- runs: interrupted, concurrent, full disks ------------------------------------------------------------
SLOW_SHIFT = '''
import os
import time

from robustbench_ibn import Shift, register_transform


class Slow(Shift):
    """The clean image, after a pause of $SLOW_SHIFT_S seconds per batch (so a test can act mid-run)."""

    label = "slow"

    def forward(self, images):
        time.sleep(float(os.environ.get("SLOW_SHIFT_S", "0")))
        return images


@register_transform("slow")
def slow():
    return Slow()
'''


@pytest.fixture(scope="module")
def eight(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 8, tmp_path_factory.mktemp("val8"))


def test_sigint_saves_says_how_to_resume_and_a_second_run_is_refused(eight, tmp_path):
    plugin = tmp_path / "slow_shift.py"
    plugin.write_text(SLOW_SHIFT)
    state, record, reference = tmp_path / "state", tmp_path / "record.json", tmp_path / "reference.json"

    def argv(output: Path, states: Path) -> list[str]:
        return [str(BIN / "robust-eval"), "--plugin", str(plugin), *FAST, "--transforms", "rgb+50,slow", "--data",
                str(eight), "--batch-size", "1", "--format", "json", "--output", str(output),
                "--state-dir", str(states)]

    def env(pause: float) -> dict[str, str]:
        return {**os.environ, "ROBUSTBENCH_IBN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
                "SLOW_SHIFT_S": str(pause)}

    # The uninterrupted reference runs beside the first run, which mostly sleeps.
    uninterrupted = subprocess.Popen([*argv(reference, tmp_path / "other"), "--no-progress"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(0))
    first = subprocess.Popen([*argv(record, state), "--no-progress"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env(2.0))
    deadline = time.time() + 120
    while not list(state.glob("*/batch-*.npz")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.02)
    # The same command while the first runs: refused at once, the first's state untouched.
    second = subprocess.run([*argv(record, state), "--no-progress"], capture_output=True, text=True, env=env(0),
                            timeout=300)
    assert first.poll() is None, "the first run must still be running for this test to mean anything"
    assert second.returncode == 2
    assert re.search(r"robust-eval: error: Another run of the same command is running right now \(it holds "
                     r".*state/\.request-\w+-rank0\.lock\)\. Wait for it to finish", second.stderr), second.stderr

    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    saved = len(list(state.glob("*/batch-*.npz")))
    assert 1 <= saved < 8 and not record.exists()
    assert re.search(rf"robust-eval: interrupted: {saved} of 8 images saved in {re.escape(str(state))}/\w+; run the "
                     rf"same command again to resume\.", err), err
    assert "Traceback" not in err

    again = subprocess.run(argv(record, state), capture_output=True, text=True, env=env(0), timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming, {saved} of 8 images already done" in again.stderr
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read()[-2000:]
    done, ref = json.loads(record.read_text()), json.loads(reference.read_text())
    assert done["predictions"] == ref["predictions"] and done["sources"]["val"]["labels"] == ref["sources"]["val"]["labels"]
    assert done["results"] == ref["results"]
    assert not list(state.glob("*/batch-*.npz"))


class _FullDisk:
    """Stands for a module's ``os``: after ``after`` good files, fdopen'd files hit ENOSPC half-way through."""

    def __init__(self, after: int = 0) -> None:
        self.after = after

    def __getattr__(self, name: str):
        return getattr(os, name)

    def fdopen(self, fd, *args, **kwargs):
        f = os.fdopen(fd, *args, **kwargs)
        if self.after > 0:
            self.after -= 1
            return f
        return _HalfWriter(f)


class _HalfWriter:
    def __init__(self, f) -> None:
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str):
        return getattr(self.f, name)


def test_a_full_disk_while_writing_the_record_loses_nothing(monkeypatch, capsys, data, tmp_path):
    record, state = tmp_path / "r.json", tmp_path / "state"
    record.write_text('{"from": "an earlier run"}\n')
    kwargs = dict(weights="random", workers=0, batch_size=2, state_dir=state, output=record)
    monkeypatch.setattr(files_module, "os", _FullDisk(after=2))  # the 2 batches are saved, the record is not
    with pytest.raises(RuntimeError) as info:
        evaluate("resnet18_ibn_b", data, "std1.5", progress=False, **kwargs)
    message = str(info.value)
    assert message.startswith(f"cannot write the record {record}: [Errno 28] No space left on device.")
    assert "Nothing computed is lost: every batch is kept in" in message and "run the same command again" in message
    assert record.read_text() == '{"from": "an earlier run"}\n' and no_temp_files(tmp_path)
    assert len(list(state.glob("*/batch-*.npz"))) == 2
    monkeypatch.setattr(files_module, "os", os)  # space freed: the same call writes it from the saved batches
    capsys.readouterr()
    result = evaluate("resnet18_ibn_b", data, "std1.5", progress=True, **kwargs)
    assert "resuming, 4 of 4 images already done" in capsys.readouterr().err
    assert EvalResult.load(record).predictions["clean"].tolist() == result.predictions["clean"].tolist()
    assert not list(state.glob("*/batch-*.npz"))


def test_a_full_disk_while_saving_a_batch_keeps_the_earlier_ones(monkeypatch, data, tmp_path):
    state = tmp_path / "state"
    monkeypatch.setattr(files_module, "os", _FullDisk(after=1))
    with pytest.raises(RuntimeError) as info:
        evaluate("resnet18_ibn_b", data, "std1.5", weights="random", workers=0, batch_size=2, state_dir=state,
                 progress=False)
    assert re.match(rf"cannot save batch 1 \(images 2-3\) in {re.escape(str(state))}/\w+: \[Errno 28\] No space left "
                    r"on device\. The 2 images saved before are kept: free some space and run the same command again",
                    str(info.value))
    assert [p.name for p in state.glob("*/*.npz")] == ["batch-p0-0000000.npz"] and no_temp_files(state)
    monkeypatch.setattr(files_module, "os", os)
    evaluate("resnet18_ibn_b", data, "std1.5", weights="random", workers=0, batch_size=2, state_dir=state,
             progress=False)


def test_a_full_disk_while_writing_a_file_or_a_cache_entry_keeps_the_old_one(monkeypatch, tmp_path):
    target = tmp_path / "leaderboards" / "README.md"
    atomic_write_text(target, "old page\n")
    monkeypatch.setattr(files_module, "os", _FullDisk())
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new page\n" * 1000)
    assert target.read_text() == "old page\n" and no_temp_files(tmp_path)
    monkeypatch.setattr(files_module, "os", os)

    cache = StyleCache("monet-test", {"generator": "x"}, root=tmp_path / "cache")
    crop = np.zeros((8, 8, 3), dtype=np.uint8)
    entry = cache.put("ab" * 32, crop)
    before = entry.read_bytes()
    monkeypatch.setattr(files_module, "os", _FullDisk())  # the cache entry goes through the same atomic writer
    with pytest.raises(OSError, match="No space left"):
        cache.put("ab" * 32, crop + 1)
    monkeypatch.setattr(files_module, "os", os)
    assert entry.read_bytes() == before and no_temp_files(tmp_path / "cache")
    assert (cache.get("ab" * 32, 8, 8) == crop).all()


# -- plug-ins and models that misbehave -------------------------------------------------------------
@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Whatever a test's plug-ins register or import is gone afterwards."""
    loaded, modules = dict(plugins._LOADED), set(sys.modules)
    with TRANSFORMS.snapshot(), MODELS.snapshot():
        yield
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)
    for name in set(sys.modules) - modules:
        if name.startswith("robustbench_ibn_plugin_"):
            del sys.modules[name]


MISBEHAVING = '''
import torch
from torch import nn
from robustbench_ibn import Shift, register_model, register_transform


class NaNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 1000)

    def forward(self, x):
        return self.head(x.mean((2, 3))) * float("{logits}")


@register_model("faulty_net")
def faulty_net():
    return NaNNet()


class Odd(Shift):
    def forward(self, images):
        return {body}


@register_transform("odd")
def odd():
    return Odd()
'''


@pytest.mark.parametrize(
    "body,logits,expected",
    [
        ("images.to('meta')", "1", r"Expected transform 'odd' \(plug-in file .*faulty\.py, class Odd\) to return a "
                                   r"tensor on cpu, but got meta\."),
        ("images.tolist()", "1", r"Expected transform 'odd' \(plug-in file .*faulty\.py, class Odd\) to return a "
                                 r"torch\.Tensor, but got list\."),
        ("images", "nan", r"model 'faulty_net' under shift 'clean' on the batch starting with 'n\d+/\w+\.JPEG': the "
                          r"logits hold NaN or Inf"),
        ("images", "inf", r"the logits hold NaN or Inf, so no prediction is meaningful\. Check the weights"),
    ],
    ids=["wrong-device", "not-a-tensor", "nan-logits", "inf-logits"],
)
def test_misbehaving_shifts_and_models_are_named(capsys, isolated, data, tmp_path, body, logits, expected):
    plugin = tmp_path / "faulty.py"
    plugin.write_text(MISBEHAVING.format(body=body, logits=logits))
    code, out, err = run(capsys, "--plugin", plugin, "--model", "faulty_net", "--weights", "random", "--workers", "0",
                         "--transforms", "odd", "--data", data, "--no-progress")
    assert code == 2 and out == "" and err.startswith("robust-eval: error: ")
    assert re.search(expected, err), err


# -- arguments ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--batch-size", "-1"], "argument --batch-size: Expected an integer >= 1 (images per batch), but got '-1'."),
        (["--batch-size", "0"], "argument --batch-size: Expected an integer >= 1 (images per batch), but got '0'."),
        (["--batch-size", "x"], "argument --batch-size: Expected an integer >= 1 (images per batch), but got 'x'."),
        (["--precision", "fp64"], "argument --precision: invalid choice: 'fp64' (choose from 'fp32', 'bf16', 'fp16')"),
        (["--limit", "0"], "argument --limit: Expected an integer >= 1 (a class-balanced subset of N images; omit it "
                           "for all), but got '0'."),
        (["--limit", "-3"], "argument --limit: Expected an integer >= 1"),
        (["--workers", "-1"], "argument --workers: Expected an integer >= 0 (decode processes; 0 decodes in the main "
                              "process), but got '-1'."),
        (["--n-boot", "0"], "argument --n-boot: Expected an integer in 1..100000 (bootstrap resamples), but got "
                           "'0'."),
        (["--device", "gpu7"], "argument --device: Expected auto, cpu, cuda or cuda:N (or another torch device type "
                               "such as mps), but got 'gpu7'."),
        (["--format", "xml"], "argument --format: invalid choice: 'xml' (choose from 'markdown', 'latex', 'csv', "
                              "'json')"),
        (["--on-bad-image", "ignore"], "argument --on-bad-image: invalid choice: 'ignore' (choose from 'error', "
                                       "'skip')"),
        (["--model-kwargs", "oops"], "argument --model-kwargs: Expected key=value pairs separated by commas, but got "
                                     "'oops'."),
        (["--model-kwargs", "a=1,a=2"], "argument --model-kwargs: Expected each key once, but 'a' is given twice"),
        (["--model-kwargs", "a={[1]: 2}"], "argument --model-kwargs: Expected the value of 'a' to be a Python literal"),
        (["--model-kwargs", "in_ratio=2"], "Expected in_ratio to be a number in [0, 1] (the share of channels an IBN "
                                           "layer gives to InstanceNorm: 0.5 official, 0 plain BN, 1 plain IN), but got 2."),
        (["--transform-weights", "monet"], "argument --transform-weights: Expected NAME=PATH pairs"),
        (["--transforms", "rgb+10:5:1"], "Expected a range START <= STOP in 'rgb+10:5:1', but got 10 > 5."),
        (["--transforms", "rgb+10:100:0"], "Expected a range step > 0 in 'rgb+10:100:0', but got 0."),
        (["--transforms", "rgb+10:100:7"], "Expected STOP - START to be a whole number of STEPs in 'rgb+10:100:7'"),
        (["--transforms", "rgb+1:2"], "Expected a severity range (a family name with START:STOP:STEP in place of its "
                                      "number, e.g. rgb+10:100:10 or std1.2:2.0:0.2), but got 'rgb+1:2'."),
        (["--transforms", "rgb+0:100000:0.01"], "Expected at most 1000 shifts in range 'rgb+0:100000:0.01'"),
        (["--transforms", "monet2:4:1"], "Expected a range over a family with a numeric parameter"),
    ],
)
def test_every_wrong_value_says_what_is_accepted(capsys, data, argv, expected):
    code, out, err = run(capsys, *FAST, "--transforms", "std1.5", "--data", data, "--no-progress", *argv)
    assert code == 2 and out == ""
    assert expected in err, err
    assert "robust-eval: error: " in err


# -- untrusted files: result records and leaderboard entries ------------------------------------------------
@pytest.fixture(scope="module")
def record(data, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("record") / "r.json"
    evaluate("resnet18_ibn_b", data, "std1.5", weights="random", workers=0, progress=False, output=path)
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda r: r["sources"]["val"].update(labels=["n01440764"] * 4),
         "Expected sources['val'].labels to be a list of 4 integers in 0..999"),
        (lambda r: r["sources"]["val"].update(labels=r["sources"]["val"]["labels"][:2]),
         "Expected sources['val'].n to be the number of labels (2)"),
        (lambda r: r["predictions"].update(clean=[[1, 2, 3]] * 4), "Expected predictions['clean'] to be a list of 4 "
                                                                   "lists of 5 integers in 0..999 in result record"),
        (lambda r: r["predictions"]["std1.5"][0].__setitem__(0, 5000), "Expected predictions['std1.5'] to be"),
        (lambda r: r["predictions"].pop("std1.5"), "Expected 'predictions' to be an object with one entry per "
                                                   "domain (clean, std1.5)"),
        (lambda r: r.update(domains=r["domains"][1:]), "unique names including 'clean'"),
        (lambda r: r["domains"][1].update(stage="late"), "Expected 'domains' to be a list of objects with a string "
                                                         "name and label, a source of ['val'], a stage in"),
        (lambda r: r["domains"][1].update(source="imagenet-r"), "a source of ['val']"),
        (lambda r: r["sources"]["val"].update(label_space={"kind": "planets"}),
         "Expected sources['val'].label_space to be a label space record"),
        (lambda r: r["data_config"].pop("crop"), "Expected data_config.crop to be an integer"),
        (lambda r: r["protocol"].pop("version"), "Expected protocol.version to be an integer"),
        (lambda r: r.update(model=["resnet"]), "Expected 'model' to be a string"),
        (lambda r: r.update(weights="random"), "Expected 'weights' to be an object"),
        (lambda r: r["sources"]["val"].update(images=["a.JPEG"]),
         "Expected sources['val'].images to be a list of 4 image paths"),
        (lambda r: r.update(tied={"clean": "none"}), "Expected 'tied' to be an object of domain name -> number"),
        (lambda r: r.update(schema_version=99), "Expected a result record with schema_version 2"),
    ],
    ids=["labels-not-integers", "labels-short", "predictions-not-top5", "prediction-not-a-class", "shift-missing",
         "no-clean", "bad-stage", "unknown-source", "bad-label-space", "no-crop", "no-protocol-version",
         "model-not-a-string", "weights-not-an-object", "images-short", "tied-not-counts", "schema-version"],
)
def test_a_damaged_result_record_is_refused_naming_the_field(capsys, record, tmp_path, damage, expected):
    damaged = json.loads(json.dumps(record))
    damage(damaged)
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(damaged))
    with pytest.raises(ValueError) as info:
        EvalResult.load(path)
    assert expected in str(info.value) and str(path) in str(info.value)
    assert report_main([str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"robust-report: error: {info.value}")


def test_a_record_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "r.json"
    path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(ValueError, match=rf"Expected a JSON result record \(robust-eval --output\) in {path}, but it "
                                         r"cannot be parsed"):
        EvalResult.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="Expected a JSON object as result record"):
        EvalResult.load(path)


@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda e: e.update(n="4"), "Expected 'n' to be an integer >= 0"),
        (lambda e: e.update(results={"clean": 1}), "Expected 'results' to be a list"),
        (lambda e: e["results"][1].update(top1_err="9.5"), "Expected results[1] of leaderboard entry"),
        (lambda e: e["results"][1].pop("top1_drop"), "Expected results[1] of leaderboard entry"),
        (lambda e: e.update(results=e["results"][1:]), "Expected a 'clean' row in the results"),
        (lambda e: e["protocol"].update(fingerprint=["x"]), "Expected a protocol fingerprint (a string)"),
        (lambda e: e.update(weights=None), "Expected 'weights' to be an object"),
        (lambda e: e.update(mean_drop=[1]), "Expected 'mean_drop' to be null or an object with a numeric top1"),
    ],
    ids=["n-a-string", "results-not-a-list", "error-a-string", "drop-missing", "no-clean", "fingerprint-a-list",
         "weights-null", "mean-drop-a-list"],
)
def test_a_damaged_leaderboard_entry_is_refused_naming_the_field(record, tmp_path, damage, expected):
    trained = {**record, "weights": {"kind": "path", "location": "/w/resnet18_ibn_b.pth", "sha256": "a" * 64,
                                     "seed": None, "description": "file /w/resnet18_ibn_b.pth"}}
    result = EvalResult.load(_write(tmp_path / "r.json", trained))
    path = save_entry(result, tmp_path / "board", n_boot=20)
    entry = json.loads(path.read_text())
    damage(entry)
    path.write_text(json.dumps(entry))
    with pytest.raises(LeaderboardError) as info:
        load_entries(tmp_path / "board")
    assert expected in str(info.value) and str(path) in str(info.value)


def _write(path: Path, record: dict) -> Path:
    path.write_text(json.dumps(record))
    return path

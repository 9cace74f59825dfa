"""Faults of the evaluation loop and its command line, each made to happen: images changed under a saved run,
damaged run-state batches, a shift that modifies its input in place, outputs that fail after the evaluation,
arguments that can only fail late, concurrent runs, and the order of the checks."""

from __future__ import annotations

import errno
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import few_images
from robustbench_ibn import DataConfig, EvalResult, evaluate
from robustbench_ibn import engine as engine_module
from robustbench_ibn import leaderboard as leaderboard_module
from robustbench_ibn import runner as runner_module
from robustbench_ibn.cli.eval import main, output_path
from robustbench_ibn.engine import Interrupted, output_lock, request_lock
from robustbench_ibn.files import safe_filename
from robustbench_ibn.models import create_model
from robustbench_ibn.transforms import TRANSFORMS, Shift, TransformError, register_transform, resolve_transform_names

PIXELS = DataConfig(resize=40, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
RUN = dict(workers=0, progress=False, device="cpu", batch_size=1, data_config=PIXELS)
FAST = ["--model", "resnet18_ibn_b", "--weights", "random", "--workers", "0", "--no-progress"]


@pytest.fixture
def copied(sample_val, tmp_path) -> Path:
    """Four real image files (copies, so a test may overwrite them), one class each."""
    linked = few_images(sample_val, 4, tmp_path / "links")
    return Path(shutil.copytree(linked, tmp_path / "val"))


@pytest.fixture(scope="module")
def data(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 4, tmp_path_factory.mktemp("val"))


class Tiny(nn.Module):
    """Logits: a fixed projection of the mean colour (different images, different top-5); Ctrl-C on call ``stop``."""

    model_name = "tiny"

    def __init__(self, stop: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 1000)
        nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))
        nn.init.normal_(self.proj.bias, generator=torch.Generator().manual_seed(1))
        self.stop, self.calls = stop, 0
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.stop:
            raise KeyboardInterrupt
        self.seen.append(x.detach().clone())
        return self.proj(x.mean((2, 3)))


def interrupted_after_two_batches(data: Path, state: Path) -> None:
    """Batches of one image, two domains: Ctrl-C on the 5th forward pass, so batches 0 and 1 are saved."""
    with pytest.raises(Interrupted, match="interrupted: 2 of 4 images saved"):
        evaluate(Tiny(stop=5), data, "std1.5", state_dir=state, **RUN)
    assert sorted(p.name for p in state.glob("*/batch-*.npz")) == ["batch-p0-0000000.npz", "batch-p0-0000001.npz"]


def fresh(data: Path, tmp_path: Path) -> EvalResult:
    return evaluate(Tiny(), data, "std1.5", state_dir=tmp_path / "fresh-state", **RUN)


def same_predictions(a: EvalResult, b: EvalResult) -> bool:
    return a.predictions.keys() == b.predictions.keys() and all(
        np.array_equal(a.predictions[k], b.predictions[k]) for k in a.predictions)


# -- resume: images changed since, damaged batches ----------------------------------------------------
def test_a_resumed_run_evaluates_again_the_batches_whose_images_changed(capsys, copied, tmp_path):
    state = tmp_path / "state"
    interrupted_after_two_batches(copied, state)
    images = sorted(copied.glob("*/*.JPEG"))
    time.sleep(0.01)
    images[0].write_bytes(images[3].read_bytes())  # batch 0's image is now the 4th image
    capsys.readouterr()
    result = evaluate(Tiny(), copied, "std1.5", state_dir=state, **RUN)
    err = capsys.readouterr().err
    rel = images[0].relative_to(copied).as_posix()
    assert f"tiny: 1 saved batch holds images changed since it was saved ({rel}): evaluating it again" in err, err
    assert "tiny: resuming, 1 of 4 images already done" in err  # batch 1 is reused: its image did not change
    assert same_predictions(result, fresh(copied, tmp_path))
    assert np.array_equal(result.predictions["clean"][0], result.predictions["clean"][3])


def test_a_file_replaced_with_the_same_size_and_time_is_still_noticed(copied, tmp_path, capsys):
    """The stamp holds the inode change time too, which a copy that keeps the modification time (cp -p) changes."""
    import os

    state = tmp_path / "state"
    interrupted_after_two_batches(copied, state)
    image = sorted(copied.glob("*/*.JPEG"))[0]
    raw = bytearray(image.read_bytes())
    before = image.stat()
    raw[-3] ^= 0xFF  # same size, another content, then the old modification time back
    image.write_bytes(bytes(raw))
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    capsys.readouterr()
    evaluate(Tiny(), copied, "std1.5", state_dir=state, **RUN)
    assert "1 saved batch holds images changed since it was saved" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_saved_batch_is_evaluated_again_saying_so(capsys, data, tmp_path, damage):
    state = tmp_path / "state"
    interrupted_after_two_batches(data, state)
    chunk = next(state.glob("*/batch-p0-0000000.npz"))
    raw = chunk.read_bytes()
    chunk.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"not a zip file" * 10, "empty": b""}[damage])
    capsys.readouterr()
    result = evaluate(Tiny(), data, "std1.5", state_dir=state, **RUN)
    err = capsys.readouterr().err
    assert re.search(rf"tiny: 1 saved batch cannot be read \({re.escape(str(chunk))}: .+\): evaluating it again", err), err
    assert "resuming, 1 of 4 images already done" in err and "Traceback" not in err
    assert same_predictions(result, fresh(data, tmp_path))


def test_the_resuming_line_is_printed_without_progress(capsys, data, tmp_path):
    state = tmp_path / "state"
    interrupted_after_two_batches(data, state)
    capsys.readouterr()
    evaluate(Tiny(), data, "std1.5", state_dir=state, **RUN)  # progress=False
    assert "tiny: resuming, 2 of 4 images already done (state in " in capsys.readouterr().err


# -- a shift that modifies its input in place ------------------------------------------------------
class InPlace(Shift):
    """RGB+50, computed in place on its input (a plug-in's mistake)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.add_(50 / 255).clamp_(0, 1)


def test_a_shift_that_modifies_its_input_cannot_change_the_shifts_after_it(data):
    with TRANSFORMS.snapshot():
        register_transform("inplace50")(InPlace)
        net = Tiny()
        result = evaluate(net, data, "inplace50,rgb+50", **{**RUN, "batch_size": 4})
    clean, inplace, rgb50 = net.seen
    expected = (clean + 50 / 255).clamp(0, 1)
    assert torch.equal(inplace, expected) and torch.equal(rgb50, expected)  # not clean + 100/255
    assert np.array_equal(result.predictions["rgb+50"], result.predictions["inplace50"])


# -- outputs: checked before any work, written before the state is removed ---------------------------
def run(capsys, *argv: object) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_evaluation(monkeypatch):
    """Any evaluation fails the test: the error must come before the work."""

    def evaluate_nothing(*args, **kwargs):
        raise AssertionError("evaluate() was called, but the arguments should have been refused first")

    monkeypatch.setattr(runner_module, "evaluate", evaluate_nothing)


@pytest.fixture
def not_a_folder(tmp_path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--plot", "out/fig.txt"], "argument --plot: Expected a plot file ending in one of .png, .svg, .pdf, but got "
                                    "'out/fig.txt'."),
        (["--ci-seed", "-1"], "argument --ci-seed: Expected an integer in 0..9223372036854775807 (the bootstrap "
                              "seed), but got '-1'."),
        (["--n-boot", "100000000"], "argument --n-boot: Expected an integer in 1..100000 (bootstrap resamples), but "
                                    "got '100000000'."),
        (["--seed", "1e23"], "argument --seed: Expected an integer in 0..9223372036854775807 (the random-init and "
                             "stochastic-shift seed), but got '1e23'."),
        (["--seed", str(2 ** 70)], "argument --seed: Expected an integer in 0..9223372036854775807"),
        (["--seed", "2.5"], "argument --seed: Expected an integer in 0..9223372036854775807"),
        (["--transforms", "rgb+50,rgb+50.0"], "Expected each shift once, but 'rgb+50' and 'rgb+50.0' are the same "
                                              "shift (rgb+{k} with k=50): give it once."),
        (["--transforms", ""], "Expected at least one shift in --transforms, but got ''. To evaluate the clean images "
                               "only, pass --transforms clean."),
        (["--transforms", ",,"], "Expected at least one shift in --transforms, but got ',,'."),
        (["--device", "meta"], "Expected --device to be auto, cpu, cuda, cuda:N or mps, but got "
                               "'meta': a run cannot compute on 'meta' devices."),
        (["--device", "xpu"], "Expected --device to be auto, cpu, cuda, cuda:N or mps, but got "
                              "'xpu'"),
        (["--output", "{not_a_folder}/r.json"], "Expected --output {not_a_folder}/r.json to be a file in a folder that "
                                                "exists or can be made, but {not_a_folder} is not a folder."),
        (["--output", "{tmp_path}"], "Expected --output {tmp_path} to be a file, but it is a folder."),
        (["--plot", "{not_a_folder}/sub/fig.png"], "Expected --plot {not_a_folder}/sub/fig.png to be a file in a "
                                                   "folder that exists or can be made"),
        (["--save-entry", "{not_a_folder}"], "Expected --save-entry {not_a_folder} to be a folder that exists or can "
                                             "be made, but {not_a_folder} is not a folder."),
        (["--plot-kind", "curves", "--plot", "fig.png"], "Expected a severity sweep (two or more members of one "
                                                         "family, e.g. --transforms rgb+10:100:10) to plot curves"),
    ],
)
def test_every_output_argument_is_checked_before_any_work(capsys, no_evaluation, data, tmp_path, not_a_folder, trained,
                                                          argv, expected):
    argv = [a.format(not_a_folder=not_a_folder, tmp_path=tmp_path) for a in argv]
    expected = expected.format(not_a_folder=not_a_folder, tmp_path=tmp_path) if "{k}" not in expected else expected
    code, out, err = run(capsys, *FAST, "--weights", trained, "--transforms", "std1.5", "--data", data, *argv)
    assert code == 2 and out == "", err
    assert "robust-eval: error: " in err and expected in err, err


def test_a_read_only_output_folder_is_refused_before_any_work(capsys, no_evaluation, data, tmp_path, monkeypatch):
    import os

    folder = tmp_path / "read-only"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == folder else real_access(p, mode, **kw))
    code, _, err = run(capsys, *FAST, "--transforms", "std1.5", "--data", data, "--output", folder / "new" / "r.json")
    assert code == 2
    assert f"Expected --output {folder}/new/r.json to be a file in a folder that exists or can be made, but {folder} " \
           f"is not writable." in err, err


def test_a_plot_without_matplotlib_is_refused_before_any_work(capsys, no_evaluation, data, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError, as when it is not installed
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, *FAST, "--transforms", "std1.5", "--data", data, "--plot", "fig.png")
    assert code == 2
    assert "robust-eval: error: Expected matplotlib for --plot, but it cannot be imported" in err
    assert "pip install 'robustbench-ibn[plot]'" in err


def test_duplicate_family_members_are_refused_by_value():
    with pytest.raises(TransformError, match=re.escape("'std1.5' and 'std1.50' are the same shift (std{factor} with factor=1.5)")):
        resolve_transform_names("std1.5,std1.50")
    assert resolve_transform_names("rgb+50,rgb+50") == ["clean", "rgb+50"]  # the same name twice is one shift
    assert resolve_transform_names(["clean"]) == ["clean"]
    with pytest.raises(TransformError, match="pass --transforms clean"):
        resolve_transform_names([])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """resnet18_ibn_b weights in a file: what --save-entry needs (random-init results are refused)."""
    path = tmp_path_factory.mktemp("weights") / "resnet18_ibn_b.pth"
    torch.save(create_model("resnet18_ibn_b", "random").state_dict(), path)
    return path


def test_a_failed_leaderboard_entry_keeps_the_state_and_the_rerun_only_writes(capsys, data, tmp_path, trained,
                                                                            monkeypatch):
    state, board, record = tmp_path / "state", tmp_path / "board", tmp_path / "r.json"
    argv = ["--model", "resnet18_ibn_b", "--weights", trained, "--workers", "0", "--no-progress", "--transforms",
            "std1.5", "--data", data, "--state-dir", state, "--save-entry", board, "--output", record,
            "--n-boot", "20", "--plot", tmp_path / "fig.png"]

    def full_disk(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(leaderboard_module, "atomic_write_text", full_disk)
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "robust-eval: error: cannot write the outputs: [Errno 28] No space left on device." in err, err
    assert "Nothing computed is lost: every batch is kept in" in err and "writes the outputs without evaluating" in err
    assert len(list(state.glob("*/batch-*.npz"))) == 1 and record.exists()  # the record was written, then the entry failed

    monkeypatch.undo()
    monkeypatch.setattr(engine_module, "_classify_unit", lambda *a: pytest.fail("a batch was evaluated again"))
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert "resuming, 4 of 4 images already done" in err and "leaderboard entry written to" in err
    assert len(list((board / "measured").glob("*.json"))) == 1 and (tmp_path / "fig.png").exists()
    assert not list(state.glob("*/batch-*.npz"))  # every output written: the state is removed


# -- concurrent runs and output names ----------------------------------------------------------------
def test_output_names_made_from_model_names_stay_in_the_folder(tmp_path):
    for name in ("hub:/dir:entry", "../x", "a/b/c", "..", ".x", "-x", "ResNet50", "x" * 81):
        path = output_path(str(tmp_path / "runs" / "{model}.json"), name)
        assert path == str(tmp_path / "runs" / safe_filename(name, ".json"))
    for name in ("resnet50", "resnet50_ibn_b", "efficientnet_lite0", "adain0.5-x"):  # plain names stay readable
        assert output_path(str(tmp_path / "runs" / "{model}.json"), name) == str(tmp_path / "runs" / f"{name}.json")
    assert output_path(str(tmp_path / "r.json"), "../x") == str(tmp_path / "r.json")


def test_a_run_writing_an_output_another_run_is_writing_is_refused_at_once(capsys, data, tmp_path, monkeypatch):
    monkeypatch.setattr(runner_module, "prepare_model", lambda *a, **k: pytest.fail("the model was built"))
    record = tmp_path / "r.json"
    with output_lock(record):
        code, _, err = run(capsys, *FAST, "--transforms", "std1.5", "--data", data, "--output", record)
    assert code == 2
    assert f"robust-eval: error: Another run is writing {record} right now (it holds {tmp_path}/.r.json.lock)" in err
    assert not (tmp_path / ".r.json.lock").exists()  # the lock file goes with the lock


def test_a_second_identical_run_is_refused_before_its_set_up(data, tmp_path, monkeypatch):
    kwargs = dict(weights="random", workers=0, progress=False, state_dir=tmp_path / "state")
    monkeypatch.setattr(runner_module, "prepare_model", lambda *a, **k: pytest.fail("the model was built"))
    monkeypatch.setattr(runner_module, "prepare_transforms", lambda *a, **k: pytest.fail("the shifts were prepared"))
    request = runner_module.request_spec("resnet18_ibn_b", data, ["clean", "std1.5"], weights="random")
    config = engine_module.run_config(None, **{k: v for k, v in kwargs.items() if k != "weights"})
    with request_lock(request, config):
        with pytest.raises(RuntimeError, match="Another run of the same command is running right now"):
            evaluate("resnet18_ibn_b", data, "std1.5", **kwargs)


# -- the order of the checks -------------------------------------------------------------------------------
def test_a_wrong_data_folder_is_named_before_any_download(capsys, tmp_path):
    """Offline (conftest: no hub cache, weights URLs on a closed port): the data folder is the first mistake."""
    missing = tmp_path / "no-such-val"
    code, _, err = run(capsys, "--model", "resnet50_ibn_b", "--transforms", "all", "--data", missing, "--workers", "0",
                       "--no-progress")
    assert code == 2 and err.startswith(f"robust-eval: error: data folder {missing} does not exist"), err


def test_the_folders_are_listed_once_and_the_model_geometry_applies(data, monkeypatch):
    from robustbench_ibn import data as data_module

    calls = []
    real = data_module._discover_imagefolder
    monkeypatch.setattr(data_module, "_discover_imagefolder", lambda *a: calls.append(1) or real(*a))
    result = evaluate(Tiny(), data, "std1.5", **RUN)
    assert len(calls) == 1
    assert result.data_config["crop"] == 32 and "resize 40 bilinear + centre crop 32" in result.dataset["description"]


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--model", "resnet18_ibn_b", "--model-kwargs", "in_grups=1"], "Expected model arguments of resnet18_ibn_b"),
        (["--model", "resnet18_ibn_b", "--weights", "/no/such/ckpt.pth"], "--weights /no/such/ckpt.pth: no such "
                                                                          "checkpoint file"),
        (["--model", "resnet152_ibn_a"], "resnet152_ibn_a has no published weights"),
    ],
    ids=["model-kwargs", "weights-file", "no-published-weights"],
)
def test_a_model_mistake_is_named_before_the_shifts_download(capsys, data, argv, expected):
    """With --transforms all offline, Monet's generator cannot be downloaded: a model mistake must come first."""
    code, _, err = run(capsys, *argv, "--transforms", "all", "--data", data, "--workers", "0", "--no-progress")
    assert code == 2 and expected in err and "monet" not in err.lower(), err

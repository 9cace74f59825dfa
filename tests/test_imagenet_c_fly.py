"""ImageNet-C on the fly in runs: names and groups, seeding, geometry, the in-memory twins, mCE, reports, leaderboards.

The corruption ops themselves (pixel and distribution parity with imagecorruptions-imaug) are tested in
test_corruptions.py; this file tests what the runs, records, reports and leaderboards make of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import few_images
from robustbench_ibn import evaluate
from robustbench_ibn.cli.eval import main
from robustbench_ibn.corruption import ON_THE_FLY, imagenet_c_runs
from robustbench_ibn.data import DataConfig, ImageNetVal
from robustbench_ibn.datasets.facts import imagenet_c_facts
from robustbench_ibn.leaderboard import entry_from_result, leaderboard_markdown
from robustbench_ibn.models import MODELS
from robustbench_ibn.report import format_report
from robustbench_ibn.results import EvalResult
from robustbench_ibn.transforms import (Contrast, GaussianNoise, JpegReencode, TransformError, create_transform,
                                        prepare_transforms, resolve_transform_names)
from robustbench_ibn.transforms.corruptions import CORRUPTIONS, STOCHASTIC, corrupt, save_as_released
from test_scale import BIN, kill_once_committed

FACTS = imagenet_c_facts()
SETS = "imagenet-c.gaussian_noise.2,imagenet-c.contrast.1.memory"  # a random and a deterministic one, both storages


@pytest.fixture(scope="module")
def data(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 4, tmp_path_factory.mktemp("val"))


@pytest.fixture(scope="module")
def two(data, tmp_path_factory) -> Path:
    return few_images(data, 2, tmp_path_factory.mktemp("two"))


@pytest.fixture(scope="module")
def crops(data) -> tuple[torch.Tensor, list[str]]:
    """The 4 images' ImageNet-C crops (resize 256 bilinear + centre crop 224) as float k/255, and their keys."""
    val = ImageNetVal(data)
    return torch.stack([val[i][0] for i in range(len(val))]).float().div(255), [rel for rel, _ in val.samples]


def test_names_groups_and_errors(capsys):
    facts = FACTS
    assert resolve_transform_names("imagenet-c")[1:] == [f"imagenet-c.{c}.{s}" for c in facts.benchmark
                                                         for s in facts.severities]
    assert len(resolve_transform_names("imagenet-c-extra")) == 1 + 20
    assert resolve_transform_names("imagenet-c.fog.memory")[1:] == [f"imagenet-c.fog.{s}.memory" for s in range(1, 6)]
    assert resolve_transform_names("imagenet-c.fog,imagenet-c.fog.2") == ["clean", *(f"imagenet-c.fog.{s}"
                                                                                   for s in range(1, 6))]
    assert resolve_transform_names("imagenet-c.fog.2:4:2.memory")[1:] == ["imagenet-c.fog.2.memory",
                                                                           "imagenet-c.fog.4.memory"]
    # The catalogue's own names keep their meaning.
    assert [type(create_transform(n)) for n in ("contrast0.5", "jpeg85", "noise20")] == [Contrast, JpegReencode,
                                                                                          GaussianNoise]
    with pytest.raises(TransformError, match=r"severity of imagenet-c.fog.\{severity\} to be one of 1, 2, 3, 4, 5, "
                                             r"but got 6 in 'imagenet-c.fog.6'"):
        resolve_transform_names("imagenet-c.fog.6")
    with pytest.raises(TransformError, match=r"Unknown transform 'imagenet-c.gausian_noise.3'. Did you mean: "
                                             r"imagenet-c.gaussian_noise.3,"):
        resolve_transform_names("imagenet-c.gausian_noise.3")
    with pytest.raises(TransformError, match=r"Did you mean: imagenet-c.gaussian_noise,"):
        resolve_transform_names("imagenet-c.gausian_noise")
    assert main(["--model", "resnet18", "--transforms", "imagenet-c.fog.0", "--data", "."]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robust-eval: error: Expected severity of imagenet-c.fog.{severity}")


def test_sets_are_the_ops_seeded_per_image_and_the_twins_differ_by_the_jpeg_save(crops):
    x, keys = crops
    for corruption in CORRUPTIONS:
        disk, memory = (prepare_transforms([f"imagenet-c.{corruption}.3{m}"], progress=False, seed=5)[
            f"imagenet-c.{corruption}.3{m}"] for m in ("", ".memory"))
        twin = memory.apply_batch(x[:1], keys[:1])
        if corruption in ("gaussian_noise", "contrast"):  # a random and a fixed one: the set is the op, seeded per image
            generators = [disk.generator_for(keys[0])] if corruption in STOCHASTIC else None
            assert torch.equal(twin, corrupt(x[:1], corruption, 3, generators)), corruption
        assert torch.equal(disk.apply_batch(x[:1], keys[:1]), save_as_released(twin)), corruption
        assert disk.definition()["params"]["storage"] == "jpeg-q85"
        assert memory.definition()["params"]["storage"] == "in-memory"
    # Seeded per image: the same pixels in any batch split and order; another image key or seed, other noise.
    noise = prepare_transforms(["imagenet-c.gaussian_noise.2"], progress=False, seed=5)["imagenet-c.gaussian_noise.2"]
    whole = noise.apply_batch(x, keys)
    order = [2, 0, 3, 1]
    permuted = torch.cat([noise.apply_batch(x[[i]], [keys[i]]) for i in order])
    assert torch.equal(permuted, whole[order])
    assert torch.equal(torch.cat([noise.apply_batch(x[:3], keys[:3]), noise.apply_batch(x[3:], keys[3:])]), whole)
    assert not torch.equal(noise.apply_batch(x[:1], ["other/key.JPEG"]), whole[:1])
    assert not torch.equal(noise.seeded(6).apply_batch(x[:1], keys[:1]), whole[:1])
    # The run's autocast (--precision bf16) is the model's: a blur's pixels stay those of fp32.
    blur = create_transform("imagenet-c.defocus_blur.2")
    fp32 = blur.apply_batch(x[:1], keys[:1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(blur.apply_batch(x[:1], keys[:1]), fp32)


def tiny_net() -> nn.Module:
    """A random linear map of 8x8 thumbnails to 1000 logits (seeded): its top-5 moves with any pixel change."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(192, 1000)).eval()


def _released_tree(data: Path, root: Path, sets: list[tuple[str, int]], seed: int) -> Path:
    """An ImageNet-C tree as make_imagenet_c.py writes one (corrupt the 224-px crop, save as JPEG quality 85), made
    with the ops and the on-the-fly sets' own per-image generators (so the two paths must agree exactly)."""
    val = ImageNetVal(data)
    for corruption, severity in sets:
        shift = prepare_transforms([f"imagenet-c.{corruption}.{severity}"], progress=False, seed=seed)[
            f"imagenet-c.{corruption}.{severity}"]
        for i, (rel, _) in enumerate(val.samples):
            x = val[i][0].float().div(255)[None]
            generators = [shift.generator_for(rel)] if corruption in STOCHASTIC else None
            pixels = corrupt(x, corruption, severity, generators)[0].mul(255).add(1e-3).floor().to(torch.uint8)
            path = root / corruption / str(severity) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.permute(1, 2, 0).numpy(), "RGB").save(path, format="JPEG", quality=85, optimize=True)
    return root


def test_on_the_fly_sets_give_a_model_of_another_geometry_what_the_released_files_give_it(two, tmp_path):
    """A model of crop 192 (resize 219 bicubic): the on-the-fly sets are decoded in ImageNet-C's geometry and
    centre-cropped to 192, as the released files' path centre-crops the 224-px files: the same predictions (of a
    random linear map of thumbnails, whose top-5 moves with any pixel)."""
    sets = [("gaussian_noise", 2), ("brightness", 2)]
    tree = _released_tree(two, tmp_path / "imagenet-c", sets, seed=3)
    small = DataConfig(resize=219, crop=192, interpolation="bicubic")
    result = evaluate(tiny_net(), two, ",".join(f"imagenet-c.{c}.{s}" for c, s in sets), data_config=small,
                      domains=[f"imagenet-c={tree}"], batch_size=4, workers=0, device="cpu", progress=False, seed=3,
                      state_dir=tmp_path / "state")
    assert set(result.sources) == {"val", "val@256-224-bilinear", *(f"imagenet-c/{c}/{s}" for c, s in sets)}
    for c, s in sets:
        assert np.array_equal(result.predictions[f"imagenet-c.{c}.{s}"], result.predictions[f"imagenet-c/{c}/{s}"])
    trees = {run.name: run for run in imagenet_c_runs(result)}
    assert set(trees) == {"imagenet-c", ON_THE_FLY[False][0]}  # never one tree: the released files' mCE is apart
    assert trees["imagenet-c"].scores.to_dict() == trees[ON_THE_FLY[False][0]].scores.to_dict()
    with pytest.raises(TransformError, match="the model's crop is 240 px"):
        evaluate(tiny_net(), two, "imagenet-c.brightness.1", data_config=DataConfig(resize=274, crop=240),
                 batch_size=4, workers=0, device="cpu", progress=False, state_dir=tmp_path / "state")


class Prototypes(nn.Module):
    """A nearest-prototype classifier on 8x8 thumbnails of the clean crops: right on every clean image, wrong once a
    corruption moves an image nearer another's thumbnail. Microseconds per batch, and top-1 errors that vary from set
    to set, so the mCE by hand below is a real check (a random network is wrong everywhere)."""

    def __init__(self, crops: torch.Tensor, labels: list[int], config: DataConfig) -> None:
        super().__init__()
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (config.mean, config.std))
        self.register_buffer("thumbs", nn.functional.adaptive_avg_pool2d((crops - mean) / std, 8).flatten(1))
        self.labels = labels
        self.data_config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distance = torch.cdist(nn.functional.adaptive_avg_pool2d(x.float(), 8).flatten(1), self.thumbs)
        logits = torch.full((x.shape[0], 1000), -1e9)
        logits[:, self.labels] = -distance
        return logits


@pytest.fixture(scope="module")
def prototypes(two) -> Prototypes:
    """The two images' thumbnails, and a flat grey one (class 999) that washed-out images come nearer to."""
    val = ImageNetVal(two)
    crops = torch.stack([val[i][0] for i in range(len(val))]).float().div(255)
    crops = torch.cat([crops, torch.full_like(crops[:1], 0.5)])
    return Prototypes(crops, [label for _, label in val.samples] + [999], DataConfig())


@pytest.fixture(scope="module")
def benchmark_run(two, prototypes, tmp_path_factory) -> tuple[EvalResult, str]:
    """``--transforms imagenet-c`` (the 75 benchmark sets) on one image, told apart from another's thumbnail: the
    record and its markdown report."""
    one = few_images(two, 1, tmp_path_factory.mktemp("one"))
    result = evaluate(prototypes, one, "imagenet-c", batch_size=4, workers=0, device="cpu", progress=False,
                      state_dir=tmp_path_factory.mktemp("state"))
    return result, format_report([result])


@pytest.mark.slow
def test_a_benchmark_run_gives_one_mce_row_equal_to_the_formula_of_its_predictions(benchmark_run):
    result, printed = benchmark_run
    labels = np.asarray(result.labels)
    errors = {(c, s): 100 * float(np.mean(result.predictions[f"imagenet-c.{c}.{s}"][:, 0] != labels))
              for c in FACTS.benchmark for s in FACTS.severities}
    clean = 100 * float(np.mean(result.predictions["clean"][:, 0] != labels))
    ce = {c: np.mean([errors[c, s] for s in FACTS.severities]) / FACTS.alexnet_err[c] for c in FACTS.benchmark}
    relative = {c: (np.mean([errors[c, s] for s in FACTS.severities]) - clean)
                / (FACTS.alexnet_err[c] - FACTS.alexnet_clean_err) for c in FACTS.benchmark}
    mce, rel_mce = np.mean(list(ce.values())), np.mean(list(relative.values()))
    label = ON_THE_FLY[False][1]
    rows = [line for line in printed.splitlines() if line.startswith(f"| {label} mCE")]
    assert len(rows) == 1, printed[:3000]  # one row for the 75 sets, not 75 rows
    assert f"mCE {mce:.2f}, relative {rel_mce:.2f} |" in rows[0]
    assert "(partial)" not in rows[0] and clean == 0
    assert len(set(errors.values())) > 1, "the errors must vary from set to set for this check to mean anything"
    table = printed[printed.index(f"{label} per corruption"):]
    for c in FACTS.benchmark:
        assert f"| {c} " in table and f"{ce[c]:.2f}" in table.split(f"| {c} ")[1].split("\n")[0]
    assert "data imagenet-c-on-the-fly: 75 sets (15 corruptions) of the images above" in printed
    assert "as released: saved as JPEG quality 85" in printed


def test_storage_is_recorded_separates_the_fingerprint_and_never_ranks_with_released_files(two, tmp_path, prototypes):
    runs = {}
    for name in ("imagenet-c.contrast.1", "imagenet-c.contrast.1.memory"):
        runs[name] = evaluate(prototypes, two, name, batch_size=4, workers=0, device="cpu", progress=False,
                              state_dir=tmp_path / "state")
    disk, memory = runs["imagenet-c.contrast.1"], runs["imagenet-c.contrast.1.memory"]
    assert disk.domains[1]["shift"]["params"]["storage"] == "jpeg-q85"
    assert memory.domains[1]["shift"]["params"]["storage"] == "in-memory"
    assert disk.protocol["fingerprint"] != memory.protocol["fingerprint"]
    entries = [entry_from_result(r, n_boot=10) for r in (disk, memory)]
    assert [list(e["corruption"]) for e in entries] == [[ON_THE_FLY[False][0]], [ON_THE_FLY[True][0]]]
    page = leaderboard_markdown(entries)
    tables = [block for block in page.split("### ")[1:] if "on the fly" in block]
    assert len(tables) == 2  # two protocols: never ranked together, and neither with released-file entries
    assert all("ImageNet-C mCE" not in block for block in tables)
    assert f"{ON_THE_FLY[False][1]} mCE" in tables[0] + tables[1] and f"{ON_THE_FLY[True][1]} mCE" in page


def _predictions(path: Path) -> dict:
    record = json.loads(path.read_text())
    return {"labels": record["sources"]["val"]["labels"], **record["predictions"]}


# A random linear map of 8x8 thumbnails: its top-5 of 1000 classes moves with any pixel change (a trained network
# would hide small ones), and it costs nothing. Bicubic, so the sets come from a second decode in ImageNet-C's geometry.
TINY = """
from torch import nn
from robustbench_ibn import ModelInfo, register_model
from robustbench_ibn.data import DataConfig


@register_model("tiny_c_net", info=ModelInfo(name="tiny_c_net", data_config=DataConfig(interpolation="bicubic")))
def tiny_c_net():
    return nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(192, 1000))
"""


@pytest.mark.slow
def test_same_predictions_across_batch_sizes_workers_ranks_and_resume(data, tmp_path):
    """In process with batches of 4 and a worker, killed and resumed with batches of 1, 2 torchrun ranks with
    batches of 3: the same predictions."""
    env = {**os.environ, "ROBUSTBENCH_IBN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    plugin = tmp_path / "tiny_c_net.py"
    plugin.write_text(TINY)

    def cli(out: Path, *extra: str) -> list[str]:
        return ["--model", "tiny_c_net", "--weights", "random", "--plugin", str(plugin), "--transforms", SETS,
                "--data", str(data), "--device", "cpu", "--format", "json", "--output", str(out), "--seed", "7", *extra]

    reference = tmp_path / "reference.json"
    with MODELS.snapshot():  # the plug-in registers tiny_c_net in this process: leave the registry as it was
        assert main([*cli(reference, "--batch-size", "4", "--workers", "1", "--no-progress")]) == 0
    state = tmp_path / "state"
    resumed = tmp_path / "resumed.json"
    # No worker process in the run that is killed: an orphaned worker would hold its lock a moment longer.
    argv = [str(BIN / "robust-eval"), *cli(resumed, "--batch-size", "1", "--workers", "0", "--state-dir", str(state))]
    committed = kill_once_committed(argv, env, state)
    assert 1 <= committed < 12, "the run must be killed part-way for this test to mean anything"
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr
    two = tmp_path / "two.json"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "robustbench_ibn",
                           *cli(two, "--batch-size", "3", "--workers", "0", "--no-progress")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = _predictions(reference)
    assert list(expected) == ["labels", "clean", *SETS.split(",")]
    assert _predictions(resumed) == expected
    assert _predictions(two) == expected

"""Plug-ins: the docs example (docs/plugins.md) end to end, --plugin files and modules, entry points, and plug-ins that fail."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import few_images
from robustbench_ibn import DataConfig, evaluate, plugins
from robustbench_ibn.cli.eval import main
from robustbench_ibn.models import MODELS
from robustbench_ibn.plugins import NO_ENTRY_POINTS_ENV, PluginError, load_entry_points, load_plugin
from robustbench_ibn.transforms import TRANSFORMS, create_transform, register_transform
from robustbench_ibn.transforms.degradation import GaussianNoise
from test_catalogue import check_contract

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--model", "resnet18_ibn_b", "--weights", "random", "--batch-size", "2", "--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def data(sample_val, tmp_path_factory) -> Path:
    return few_images(sample_val, 3, tmp_path_factory.mktemp("val"))


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Whatever a test's plug-ins register or import is gone afterwards."""
    loaded, modules = dict(plugins._LOADED), set(sys.modules)
    monkeypatch.delenv(NO_ENTRY_POINTS_ENV, raising=False)
    with TRANSFORMS.snapshot(), MODELS.snapshot():
        yield
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if name.startswith("robustbench_ibn_plugin_") or file.startswith(str(tmp_path)):
            del sys.modules[name]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def docs_example() -> str:
    """The first python block of docs/plugins.md ("Write your own shift"), the README's link for plug-ins."""
    page = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    return re.search(r"```python\n(.*?)```", page, re.S).group(1)


# -- the docs example ---------------------------------------------------------------------------------
def test_docs_example_is_the_examples_file():
    assert docs_example() == (ROOT / "examples" / "my_shifts.py").read_text(encoding="utf-8")


def test_docs_example_runs_through_the_cli(capsys, data, tmp_path):
    plugin = tmp_path / "my_shifts.py"
    plugin.write_text(docs_example(), encoding="utf-8")

    code, out, err = run(capsys, "--plugin", plugin, "--list-transforms", "mycast*")
    assert code == 0, err
    assert re.search(r"mycast\+\{k\}\s+mycast\+30\s+cast\+30\s+k: cast strength.*identity mycast\+0", out)
    assert f"[plug-in file {plugin}]" in out

    record = tmp_path / "r.json"
    code, out, err = run(capsys, "--plugin", plugin, *ARGS, "--transforms", "mycast+30", "--data", data,
                         "--format", "json", "--output", record)
    assert code == 0, err
    printed = json.loads(out)
    assert [(r["transform"], r["label"], r["n"]) for r in printed["results"]] == [
        ("clean", "origin", 3), ("mycast+30", "cast+30", 3)]
    definition = next(d["shift"] for d in printed["domains"] if d["name"] == "mycast+30")
    assert definition["origin"] == f"plug-in file {plugin}"
    assert definition["severity"] == {"family": "mycast+{k}", "param": "k", "value": 30, "identity": 0}
    assert definition["params"] == {"k": 30}
    assert json.loads(record.read_text())["predictions"]["mycast+30"]

    # The example goes through the same contract as every built-in shift.
    check_contract("mycast+{k}")
    x = torch.full((1, 3, 2, 2), 0.5)
    assert create_transform("mycast+51")(x)[0, :, 0, 0].tolist() == pytest.approx([0.7, 0.6, 0.3])


def test_loading_twice_is_a_no_op(tmp_path):
    plugin = tmp_path / "my_shifts.py"
    plugin.write_text(docs_example(), encoding="utf-8")
    assert load_plugin(plugin) is load_plugin(str(plugin))
    assert TRANSFORMS.list("mycast*") == ["mycast+{k}"]


# -- plug-ins that misbehave --------------------------------------------------------------------------
BROKEN = """
import torch
from torch import nn
from robustbench_ibn import Shift, register_model, register_transform


@register_model("tiny_plugin_net")  # a plug-in model too: keeps these runs fast
def tiny_plugin_net():
    return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 1000))


class Broken(Shift):
    def apply_batch(self, images, keys):
        {body}

    def forward(self, images):
        return self.apply_batch(images, [str(i) for i in range(len(images))])


@register_transform("broken{{k}}", identity=None, example=1)
def broken(k):
    return Broken()
"""


@pytest.mark.parametrize(
    "body,expected",
    [
        ("return images[:, :, :-1]", r"Expected transform 'broken1' .* to keep the batch shape \(2, 3, 224, 224\), "
                                     r"but got \(2, 3, 223, 224\)"),
        ("return images * float('nan')", r"Expected transform 'broken1' .* to return finite values"),
        ("return images + 1", r"Expected transform 'broken1' .* to stay in its declared range \[0.0, 1.0\]"),
        ("return images.to(torch.uint8)", r"Expected transform 'broken1' .* floating-point tensor"),
        ("raise RuntimeError('boom')", r"transform 'broken1' .* raised RuntimeError on the batch starting with "
                                       r"'n\d+/.*': boom"),
        ("assert len(keys) > 1 or images.shape[-1] < 0, 'no single-image batches'\n        return images",
         r"transform 'broken1' .* raised AssertionError on the batch starting with .*no single-image batches"),
    ],
    ids=["shape", "nan", "range", "dtype", "raises", "raises-on-a-later-batch"],
)
def test_a_misbehaving_shift_is_named_and_nothing_is_lost(capsys, data, tmp_path, body, expected):
    plugin = tmp_path / "broken_shifts.py"
    plugin.write_text(BROKEN.format(body=body), encoding="utf-8")
    earlier = tmp_path / "earlier.json"
    earlier.write_text('{"from": "an earlier run"}\n')
    # 3 images in batches of 2: the last batch has one image.
    code, out, err = run(capsys, "--plugin", plugin, "--model", "tiny_plugin_net", *ARGS[2:], "--transforms",
                         "rgb+50,broken1", "--data", data, "--output", earlier)
    assert code == 2
    assert out == ""
    assert re.search(expected, err), err
    assert f"plug-in file {plugin}, class Broken" in err
    assert earlier.read_text() == '{"from": "an earlier run"}\n'


def test_a_shift_that_cannot_be_built_or_set_up_is_named(capsys, data, tmp_path):
    plugin = tmp_path / "setup_shifts.py"
    plugin.write_text(textwrap.dedent("""
        from robustbench_ibn import Shift, register_transform


        class NeedsToken(Shift):
            def prepare(self, *, progress=True):
                raise KeyError("API_TOKEN")


        @register_transform("needs_token")
        def needs_token():
            return NeedsToken()


        @register_transform("bad_build{k}", example=1)
        def bad_build(k):
            return NeedsToken(k)
    """))
    for name, expected in [
        ("needs_token", r"transform 'needs_token' \(plug-in file .*setup_shifts\.py, class NeedsToken\) failed in "
                        r"prepare\(\): KeyError: 'API_TOKEN'"),
        ("bad_build2", r"Could not build transform 'bad_build2' \(registered by plug-in file .*setup_shifts\.py\): "
                       r"TypeError"),
    ]:
        code, out, err = run(capsys, "--plugin", plugin, *ARGS, "--transforms", name, "--data", data)
        assert code == 2 and out == ""
        assert re.search(expected, err), err


@pytest.mark.parametrize(
    "source,expected",
    [
        ("def oops(:\n", r"SyntaxError: .*\(at .*bad_plugin\.py:1\)"),
        ("import torch\n\nimport not_a_real_dependency_xyz\n",
         r"ModuleNotFoundError: No module named 'not_a_real_dependency_xyz' \(at .*bad_plugin\.py:3\)"),
        ("from robustbench_ibn import register_transform\n\nregister_transform('clean')(lambda: None)\n",
         r"ValueError: A transform is already registered under the name 'clean'.* \(at .*bad_plugin\.py:3\)"),
    ],
    ids=["syntax", "missing-dependency", "duplicate-name"],
)
def test_a_plugin_that_does_not_import_is_named(capsys, tmp_path, source, expected):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(source, encoding="utf-8")
    code, out, err = run(capsys, "--plugin", plugin, "--list-transforms")
    assert code == 2 and out == ""
    assert err.startswith(f"robust-eval: error: Could not load plug-in file {plugin}: ")
    assert re.search(expected, err), err


def test_a_failed_import_leaves_nothing_registered(tmp_path):
    plugin = tmp_path / "half.py"
    plugin.write_text(textwrap.dedent("""
        from robustbench_ibn import register_transform
        from robustbench_ibn.transforms import Clean

        register_transform("half_done")(lambda: Clean())
        raise RuntimeError("configuration missing")
    """))
    with pytest.raises(PluginError, match=r"plug-in file .*half\.py: RuntimeError: configuration missing \(at .*:6\)"):
        load_plugin(plugin)
    assert "half_done" not in TRANSFORMS
    assert not [m for m in sys.modules if m.startswith("robustbench_ibn_plugin_half_")]


def test_missing_plugins_say_what_is_accepted(capsys, tmp_path):
    code, _, err = run(capsys, "--plugin", tmp_path / "nope.py", "--list-transforms")
    assert code == 2 and f"Could not load plug-in file {tmp_path / 'nope.py'}: no such file" in err
    with pytest.raises(PluginError, match=r"plug-in module no_such_pkg\.shifts: ModuleNotFoundError.*Pass a \.py file"):
        load_plugin("no_such_pkg.shifts")
    with pytest.raises(PluginError, match="a .py file or a dotted module name"):
        load_plugin("not a module")


# -- modules and installed packages -------------------------------------------------------------------
PKG_SHIFTS = """
from robustbench_ibn import register_transform
from robustbench_ibn.transforms import ChannelOffset


@register_transform("{name}+{{k}}", identity=0, example=20, param_help="K/255 added to green")
def build(k):
    return ChannelOffset("g", k)
"""


def test_plugin_module_on_sys_path_or_in_the_current_directory(capsys, tmp_path, monkeypatch):
    package = tmp_path / "rbtest_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "shifts.py").write_text(PKG_SHIFTS.format(name="pkgcast"))
    monkeypatch.chdir(tmp_path)  # not on sys.path: found like `python -m` would
    code, out, err = run(capsys, "--plugin", "rbtest_pkg.shifts", "--list-transforms", "pkgcast*")
    assert code == 0, err
    assert "pkgcast+20" in out and "G+20" in out and "[plug-in module rbtest_pkg.shifts]" in out
    assert str(tmp_path) not in sys.path


def make_distribution(site: Path, dist: str, entry_points: str, modules: dict[str, str]) -> None:
    """An installed distribution as pip leaves it: modules plus ``<dist>.dist-info`` with entry_points.txt."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)


TINY_MODEL = """
from torch import nn
from robustbench_ibn import register_model


@register_model("tiny_ep_net")
def tiny_ep_net():
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000))
"""


def test_entry_points_of_installed_packages_load_automatically(capsys, data, tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_distribution(site, "fake-shifts", """
        [robustbench_ibn.transforms]
        epcast = rbtest_ep_shifts

        [robustbench_ibn.models]
        tiny = rbtest_ep_models:tiny_ep_net
    """, {"rbtest_ep_shifts": PKG_SHIFTS.format(name="epcast"), "rbtest_ep_models": TINY_MODEL})
    monkeypatch.syspath_prepend(str(site))

    code, out, err = run(capsys, "--list-transforms", "epcast*")
    assert code == 0, err
    assert "epcast+20" in out
    assert "[entry point epcast = rbtest_ep_shifts (robustbench_ibn.transforms) of fake-shifts]" in out
    code, out, err = run(capsys, "--list-models", "tiny*")
    assert code == 0 and out.split()[0] == "tiny_ep_net" and "of fake-shifts]" in out

    code, out, err = run(capsys, "--model", "tiny_ep_net", "--weights", "random", "--transforms", "epcast+20",
                         "--data", data, "--workers", "0", "--no-progress", "--format", "csv")
    assert code == 0, err
    assert "epcast+20" in out and "G+20" in out
    assert load_entry_points() == []  # once only


def test_entry_points_can_be_switched_off(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_distribution(site, "fake-off", "[robustbench_ibn.transforms]\noff = rbtest_off_shifts\n",
                      {"rbtest_off_shifts": PKG_SHIFTS.format(name="offcast")})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(NO_ENTRY_POINTS_ENV, "1")
    assert load_entry_points() == [] and "offcast+1" not in TRANSFORMS
    monkeypatch.setenv(NO_ENTRY_POINTS_ENV, "0")
    assert load_entry_points() == ["entry point off = rbtest_off_shifts (robustbench_ibn.transforms) of fake-off"]
    assert "offcast+1" in TRANSFORMS


def test_a_broken_installed_plugin_names_its_package(capsys, tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_distribution(site, "fake-broken", "[robustbench_ibn.models]\nbad = rbtest_bad_models\n",
                      {"rbtest_bad_models": "raise ImportError('built for another torch')\n"})
    monkeypatch.syspath_prepend(str(site))
    code, out, err = run(capsys, "--list-models")
    assert code == 2 and out == ""
    assert "entry point bad = rbtest_bad_models (robustbench_ibn.models) of fake-broken: ImportError: built for " \
           "another torch" in err
    assert f"Fix or uninstall fake-broken, or set {NO_ENTRY_POINTS_ENV}=1" in err


# -- stochastic shifts through the runner -------------------------------------------------------------
def test_the_runner_seeds_stochastic_shifts_per_image(data):
    """Through evaluate(): batch size does not change an image's noise; the run seed does."""
    seen: dict[str, dict[str, torch.Tensor]] = {}

    class SpyNoise(GaussianNoise):
        def apply_batch(self, images, keys):
            out = super().apply_batch(images, keys)
            for key, image in zip(keys, out):
                seen.setdefault(f"{self.seed}/{self.batch_size}", {})[key] = image.clone()
            return out

    register_transform("spynoise{sigma}", identity=0, example=30)(lambda sigma: SpyNoise(sigma))
    torch.manual_seed(0)
    tiny = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 1000)).eval()
    results = {}
    for seed, batch_size in [(0, 1), (0, 2), (1, 2)]:
        SpyNoise.batch_size = batch_size
        results[seed, batch_size] = evaluate(tiny, data, "spynoise30", data_config=DataConfig(), seed=seed,
                                             batch_size=batch_size, workers=0, progress=False)
    assert len(seen["0/1"]) == 3 and seen["0/1"].keys() == seen["0/2"].keys()
    for key in seen["0/1"]:
        assert torch.equal(seen["0/1"][key], seen["0/2"][key])
        assert not torch.equal(seen["0/1"][key], seen["1/2"][key])
    assert (results[0, 1].predictions["spynoise30"] == results[0, 2].predictions["spynoise30"]).all()
    definition = results[1, 2].domains[1]["shift"]
    assert definition["stochastic"]["seed"] == 1 and definition["severity"]["value"] == 30

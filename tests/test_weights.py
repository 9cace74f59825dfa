"""Weights loading: local files, wrappers, strict mismatch reports, downloads from a local server, random init.

Offline: downloads come from an http.server on 127.0.0.1 started here; the torch hub cache is a temp dir.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import LocalServer

from robustbench_ibn.models._api import ModelInfo
from robustbench_ibn.hub import WeightsError, cached_download, file_sha256
from robustbench_ibn.models._weights import WeightsSource, load_weights


class _NotATensor:
    """A pickled custom object: weights_only=True must refuse it."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def _trained_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    net = _net()
    with torch.no_grad():  # make the running stats differ from a fresh init too
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].num_batches_tracked.fill_(7)
    return net.state_dict()


def _assert_loaded(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert got.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(got[k], v), k


def _fresh() -> nn.Module:
    torch.manual_seed(0)
    return _net()


INFO = ModelInfo(name="tiny")


@pytest.fixture(autouse=True)
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the torch hub cache at a temp dir (restored afterwards) so the real cache is never touched."""
    hub = tmp_path / "hub"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)  # recorded so teardown restores it
    torch.hub.set_dir(str(hub))
    return hub


def _publish(root: Path, stem: str) -> tuple[str, str, dict[str, torch.Tensor]]:
    """Save a checkpoint as ``<stem>-<hash8>.pth`` under root; return its name, full sha256 and state."""
    state = _trained_state()
    tmp = root / f"{stem}.tmp"
    torch.save(state, tmp)
    digest = file_sha256(tmp)
    name = f"{stem}-{digest[:8]}.pth"
    tmp.rename(root / name)
    return name, digest, state


def _cache_files(hub: Path) -> list[str]:
    ckpt = hub / "checkpoints"
    return sorted(p.name for p in ckpt.iterdir()) if ckpt.exists() else []


# --- local files -----------------------------------------------------------------------------------------------


def test_local_path_loads_values(tmp_path: Path) -> None:
    state = _trained_state()
    path = tmp_path / "ckpt.pth"
    torch.save(state, path)
    model = _fresh()
    src = load_weights(model, str(path), info=INFO, seed=0)
    _assert_loaded(model, state)
    assert src.kind == "path"
    assert src.location == str(path.resolve())
    assert src.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert src.describe().startswith(f"file {path.resolve()} (sha256 {src.sha256[:8]}")
    assert not src.is_random


def test_wrapped_dataparallel_checkpoint_loads(tmp_path: Path) -> None:
    state = _trained_state()
    path = tmp_path / "old.pth.tar"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 90, "arch": "x"}, path)
    model = _fresh()
    load_weights(model, path, info=INFO, seed=0)
    _assert_loaded(model, state)


def test_real_dataparallel_state_dict_keeps_metadata(tmp_path: Path) -> None:
    """A state_dict saved from a DataParallel-like wrapper carries prefixed _metadata; it must still load."""
    wrapper = nn.Module()
    wrapper.module = _net()
    wrapper.module.load_state_dict(_trained_state())
    sd = wrapper.state_dict()
    assert "module.1" in sd._metadata  # type: ignore[attr-defined]
    path = tmp_path / "dp.pth"
    torch.save(sd, path)
    model = _fresh()
    load_weights(model, path, info=INFO, seed=0)
    _assert_loaded(model, _trained_state())


def test_model_wrapper_and_checkpoint_filter(tmp_path: Path) -> None:
    state = _trained_state()
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"net." + k: v for k, v in state.items()}}, path)
    info = ModelInfo(name="tiny", checkpoint_filter=lambda sd: {k.removeprefix("net."): v for k, v in sd.items()})
    model = _fresh()
    load_weights(model, path, info=info, seed=0)
    _assert_loaded(model, state)


def test_missing_unexpected_and_misshaped_reported_together(tmp_path: Path) -> None:
    state = dict(_trained_state())
    del state["0.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["3.weight"] = torch.zeros(7, 4 * 6 * 6)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as exc:
        load_weights(_fresh(), path, info=INFO, seed=0)
    msg = str(exc.value)
    assert str(path) in msg and "tiny" in msg
    assert "missing" in msg and "0.bias" in msg
    assert "unexpected" in msg and "extra.weight" in msg
    assert "mis-shaped" in msg and "3.weight expected [5, 144] got [7, 144]" in msg


def test_long_key_lists_are_truncated(tmp_path: Path) -> None:
    state = dict(_trained_state())
    state.update({f"junk.{i}": torch.zeros(1) for i in range(25)})
    path = tmp_path / "junk.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"25 unexpected") as exc:
        load_weights(_fresh(), path, info=INFO, seed=0)
    assert "and 15 more" in str(exc.value)
    assert "junk.24" not in str(exc.value)


def test_missing_num_batches_tracked_is_accepted(tmp_path: Path) -> None:
    """Old BatchNorm files lack num_batches_tracked; stock BN fills it in (ibn_zoo.md 9.5), so must we."""
    state = {k: v for k, v in _trained_state().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old_bn.pth"
    torch.save(state, path)  # a plain dict: no version metadata
    model = _fresh()
    load_weights(model, path, info=INFO, seed=0)
    assert torch.equal(model.state_dict()["1.running_mean"], state["1.running_mean"])


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(WeightsError, match="cannot read") as exc:
        load_weights(_fresh(), path, info=INFO, seed=0)
    assert str(path) in str(exc.value)


def test_pickled_object_refused_by_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"w": _NotATensor()}, path)
    with pytest.raises(WeightsError, match="weights_only") as exc:
        load_weights(_fresh(), path, info=INFO, seed=0)
    assert str(path) in str(exc.value) and "_NotATensor" in str(exc.value)


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save(_trained_state(), good)
    path = tmp_path / "truncated.pth"
    path.write_bytes(good.read_bytes()[:200])
    with pytest.raises(WeightsError, match="corrupt or truncated") as exc:
        load_weights(_fresh(), path, info=INFO, seed=0)
    assert str(path) in str(exc.value)


def test_dict_without_tensors_is_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "arch": "resnet"}, path)
    with pytest.raises(WeightsError, match="holds no state_dict") as exc:
        load_weights(_fresh(), path, info=INFO, seed=0)
    assert "epoch" in str(exc.value)


def test_missing_path_says_what_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match="'official', 'random', a URL or an existing checkpoint file") as exc:
        load_weights(_fresh(), str(path), info=INFO, seed=0)
    assert "nope.pth" in str(exc.value)


# --- random ----------------------------------------------------------------------------------------------------


def test_random_keeps_init_and_says_so() -> None:
    model = _fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    src = load_weights(model, "random", info=INFO, seed=3)
    _assert_loaded(model, before)
    assert src == WeightsSource(kind="random", seed=3)
    assert src.is_random
    assert "RANDOM" in src.describe() and "seed 3" in src.describe()
    assert src.to_dict() == {"kind": "random", "location": None, "sha256": None, "seed": 3}


# --- official / URL downloads ----------------------------------------------------------------------------------


def test_official_without_url_raises() -> None:
    with pytest.raises(WeightsError, match="tiny has no published weights; pass weights=PATH .*weights='random'"):
        load_weights(_fresh(), "official", info=INFO, seed=0)


def test_official_download_then_cache(local_server: tuple[LocalServer, Path], hub_dir: Path) -> None:
    srv, root = local_server
    name, digest, state = _publish(root, "tiny")
    info = ModelInfo(name="tiny", url=srv.url(name), hash_prefix=digest[:8])

    model = _fresh()
    src = load_weights(model, "official", info=info, seed=0)
    _assert_loaded(model, state)
    assert src.kind == "official" and src.location == info.url and src.sha256 == digest
    assert src.describe() == f"official {info.url} (sha256 {digest[:12]}...)"
    assert _cache_files(hub_dir) == [name]  # no temp files left beside it
    assert srv.requests == 1

    srv.stop()  # the second call must not need the server
    model2 = _fresh()
    src2 = load_weights(model2, "official", info=info, seed=0)
    _assert_loaded(model2, state)
    assert src2 == src
    assert srv.requests == 1


def test_url_spec_checks_hash_from_file_name(local_server: tuple[LocalServer, Path], hub_dir: Path) -> None:
    srv, root = local_server
    name, digest, state = _publish(root, "mine")
    model = _fresh()
    src = load_weights(model, srv.url(name), info=INFO, seed=0)
    _assert_loaded(model, state)
    assert src.kind == "url" and src.sha256 == digest and src.location == srv.url(name)
    assert (hub_dir / "checkpoints" / name).is_file()

    # Same content under a name that claims another hash: refused, nothing cached.
    wrong = f"mine-{'0' if digest[0] != '0' else '1'}{digest[1:8]}.pth"
    (root / wrong).write_bytes((root / name).read_bytes())
    with pytest.raises(WeightsError, match="hash mismatch"):
        load_weights(_fresh(), srv.url(wrong), info=INFO, seed=0)
    assert _cache_files(hub_dir) == [name]


def test_wrong_hash_prefix_fails_and_caches_nothing(local_server: tuple[LocalServer, Path], hub_dir: Path) -> None:
    srv, root = local_server
    name, digest, _ = _publish(root, "tiny")
    bad_prefix = "0" * 8 if not digest.startswith("0" * 8) else "f" * 8
    info = ModelInfo(name="tiny", url=srv.url(name), hash_prefix=bad_prefix)
    with pytest.raises(WeightsError) as exc:
        load_weights(_fresh(), "official", info=info, seed=0)
    msg = str(exc.value)
    assert info.url in msg and bad_prefix in msg and digest in msg
    assert "weights='/path/to/" in msg
    assert _cache_files(hub_dir) == []


def test_unreachable_url_names_url_and_way_out(hub_dir: Path) -> None:
    # A bound but non-listening socket: connections to its port are refused, and nobody else can take it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/tiny-12345678.pth"
        info = ModelInfo(name="tiny", url=url, hash_prefix="12345678")
        with pytest.raises(WeightsError) as exc:
            load_weights(_fresh(), "official", info=info, seed=0)
    msg = str(exc.value)
    assert url in msg
    assert "weights='/path/to/tiny-12345678.pth'" in msg
    assert str(hub_dir / "checkpoints" / "tiny-12345678.pth") in msg
    assert _cache_files(hub_dir) == []


def test_http_404_is_a_weights_error(local_server: tuple[LocalServer, Path], hub_dir: Path) -> None:
    srv, _ = local_server
    with pytest.raises(WeightsError, match="could not download"):
        cached_download(srv.url("absent-abcdef12.pth"), "abcdef12", progress=False)
    assert _cache_files(hub_dir) == []


def test_corrupt_cached_file_is_reported(hub_dir: Path) -> None:
    url = "http://127.0.0.1:9/tiny-abcdef12.pth"  # never contacted: the cached file is checked first
    cached = hub_dir / "checkpoints" / "tiny-abcdef12.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    info = ModelInfo(name="tiny", url=url, hash_prefix="abcdef12")
    with pytest.raises(WeightsError, match="Delete it") as exc:
        load_weights(_fresh(), "official", info=info, seed=0)
    assert str(cached) in str(exc.value) and "abcdef12" in str(exc.value)


def test_cached_download_returns_cache_path(local_server: tuple[LocalServer, Path], hub_dir: Path) -> None:
    srv, root = local_server
    name, digest, _ = _publish(root, "gan")
    path = cached_download(srv.url(name), digest[:8], progress=False)
    assert path == hub_dir / "checkpoints" / name
    assert file_sha256(path) == digest

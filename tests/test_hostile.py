"""Hostile input outside the evaluation loop (issue 13): each case once gave a silently wrong number, a write
outside its folder, a hang, a memory blow-up or a traceback. Every test checks what the user is told.

Image folders are made of empty placeholder files wherever only discovery is tested (discovery never decodes).
Downloads come from servers on 127.0.0.1 started here; the torch hub cache is a temporary folder (conftest).
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_ibn import data as data_module
from robustbench_ibn import evaluate
from robustbench_ibn.cli import cache as cache_cli
from robustbench_ibn.checks import check_finite, is_iso_date
from robustbench_ibn.cli.eval import main
from robustbench_ibn.cli.leaderboard import main as leaderboard_main
from robustbench_ibn.cli.report import main as report_main
from robustbench_ibn.data import DataError, ImageNetVal, imagenet_classes, load_rgb
from robustbench_ibn.datasets import create_dataset
from robustbench_ibn.files import read_json, safe_filename
from robustbench_ibn.hub import DOWNLOAD_TIMEOUT_ENV, WeightsError, cached_download, fetch, file_sha256
from robustbench_ibn.leaderboard import LeaderboardError, entry_from_result, leaderboard_markdown, load_entries, save_entry
from robustbench_ibn.models import create_model
from robustbench_ibn.report import format_report
from robustbench_ibn.stylecache import StyleCache, cache_info, clear_cache, verify_cache
from test_report import make_result

WNIDS = [wnid for wnid, _ in imagenet_classes()]


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def three_classes(root: Path) -> Path:
    """Classes 0, 1, 2 with two placeholder images each."""
    for c in range(3):
        for i in range(2):
            touch(root / WNIDS[c] / f"img{c}{i}.JPEG")
    return root


def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and header declaring ``width`` x ``height`` RGB pixels, with no pixel data:
    what a decompression bomb looks like to a reader before it decodes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


# -- 1. links in an image folder: each image file once -----------------------------------------------------
def test_a_link_loop_in_a_class_folder_is_named_not_counted(tmp_path):
    root = three_classes(tmp_path / "val")
    (root / WNIDS[0] / "up").symlink_to("..")  # before: 3 classes became 120+ images, all labelled class 0
    with pytest.raises(DataError) as info:
        ImageNetVal(root)
    message = str(info.value)
    assert message.startswith(f"1 problem in data folder {root}: each image file must be reached exactly once")
    assert f"{root / WNIDS[0] / 'up'} leads back to {os.path.realpath(root)}, which holds the data folder: a link " \
           "loop" in message
    assert "remove the links that loop or reach a folder or image a second time" in message


def test_links_to_a_folder_or_an_image_already_reached_are_named(tmp_path):
    root = three_classes(tmp_path / "val")
    (root / WNIDS[0] / "again").symlink_to(root / WNIDS[0])  # its own folder
    (root / WNIDS[1] / "other.JPEG").symlink_to(root / WNIDS[2] / "img20.JPEG")  # class 2's image, labelled 1
    (root / WNIDS[2] / "self").symlink_to("self")  # a link to itself
    with pytest.raises(DataError) as info:
        ImageNetVal(root)
    message = str(info.value)
    assert message.startswith(f"3 problems in data folder {root}")
    assert f"{root / WNIDS[0] / 'again'} and {root / WNIDS[0]} are the same folder (through a link)" in message
    assert (f"{root / WNIDS[2] / 'img20.JPEG'} and {root / WNIDS[1] / 'other.JPEG'} are the same image file (through "
            "a link)") in message
    assert f"{root / WNIDS[2] / 'self'} cannot be resolved (Too many levels of symbolic links)" in message


def test_every_dataset_kind_lists_images_through_the_same_walk(tmp_path):
    root = three_classes(tmp_path / "photos")
    (root / WNIDS[2] / "up").symlink_to("..")
    with pytest.raises(DataError, match=re.escape(f"{root / WNIDS[2] / 'up'} leads back to")):
        create_dataset("folder", root)  # before: the same os.walk(followlinks=True) loop as ImageNetVal's


def test_a_link_out_of_the_data_folder_is_followed_once(tmp_path):
    # The documented choice: a subset made of links into a full copy elsewhere is a normal data folder.
    full = three_classes(tmp_path / "full")
    subset = tmp_path / "subset"
    subset.mkdir()
    (subset / WNIDS[0]).symlink_to(full / WNIDS[0])
    (subset / WNIDS[1]).mkdir()
    (subset / WNIDS[1] / "img10.JPEG").symlink_to(full / WNIDS[1] / "img10.JPEG")
    dataset = ImageNetVal(subset)
    assert dataset.samples == [(f"{WNIDS[0]}/img00.JPEG", 0), (f"{WNIDS[0]}/img01.JPEG", 0),
                               (f"{WNIDS[1]}/img10.JPEG", 1)]


# -- 2. unreadable folders and broken links are named ----------------------------------------------------
def test_a_broken_link_is_named(tmp_path):
    root = three_classes(tmp_path / "val")
    (root / WNIDS[1] / "gone.JPEG").symlink_to(tmp_path / "elsewhere" / "gone.JPEG")
    with pytest.raises(DataError) as info:
        ImageNetVal(root)
    assert (f"{root / WNIDS[1] / 'gone.JPEG'} is a broken link (to {tmp_path / 'elsewhere' / 'gone.JPEG'}, which "
            "does not exist)") in str(info.value)
    assert "remove or repair the broken links" in str(info.value)


def test_a_broken_link_in_a_flat_folder_is_named(tmp_path):
    root = tmp_path / "flat"
    touch(root / "a.JPEG")
    (root / "b.JPEG").symlink_to("missing.JPEG")
    (root / "val.txt").write_text("a.JPEG 0\nb.JPEG 1\n")
    with pytest.raises(DataError, match=re.escape(f"{root / 'b.JPEG'} is a broken link")):
        ImageNetVal(root)


def test_an_unreadable_class_folder_is_named(tmp_path, monkeypatch):
    # Tests run as root here, and root reads a chmod 000 folder anyway: the refusal is simulated by an os.scandir
    # that raises PermissionError for one folder (test_a_chmod_000_folder_is_named does it for real as non-root).
    root = three_classes(tmp_path / "val")
    locked = root / WNIDS[1]
    real_scandir = os.scandir

    def guarded_scandir(path):
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(data_module.os, "scandir", guarded_scandir)
    with pytest.raises(DataError) as info:  # before: its two images were silently left out
        ImageNetVal(root)
    assert f"{locked} cannot be read (Permission denied)" in str(info.value)
    assert "Make the folders readable (chmod -R u+rX)" in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads a chmod 000 folder anyway")
def test_a_chmod_000_folder_is_named(tmp_path):
    root = three_classes(tmp_path / "val")
    locked = root / WNIDS[1]
    locked.chmod(0)
    try:
        with pytest.raises(DataError, match=re.escape(f"{locked} cannot be read (Permission denied)")):
            ImageNetVal(root)
    finally:
        locked.chmod(0o755)


# -- flat labels file: a file name with a space ---------------------------------------------------------
def test_a_file_name_with_spaces_in_a_labels_file(tmp_path):
    root = tmp_path / "flat"
    touch(root / "my photo.JPEG")
    touch(root / "b.JPEG")
    (root / "val.txt").write_text("my photo.JPEG 65\nb.JPEG n01440764\n")
    assert ImageNetVal(root).samples == [("b.JPEG", 0), ("my photo.JPEG", 65)]
    (root / "val.txt").write_text("my photo 65\nb.JPEG 0\n")  # a name and a label, or three fields?
    with pytest.raises(DataError) as info:
        ImageNetVal(root)
    assert "line 1: expected 'filename label_index', got 'my photo 65': 3 fields, and 'my photo' is not a file " \
           "name with an image extension" in str(info.value)
    assert "A file name with spaces must keep its extension" in str(info.value)


# -- 6. 16-bit PNGs -----------------------------------------------------------------------------------------
def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    values = np.array([[0, 128, 129, 257 * 100, 257 * 200 + 128, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")  # 16-bit greyscale PNG (PIL mode I;16)
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = np.asarray(load_rgb(tmp_path / "deep.png"))
    # round(v * 255 / 65535), as an 8-bit export does; before: everything above 255 was white (255).
    assert rgb.shape == (1, 6, 3) and (rgb == rgb[..., :1]).all()
    assert rgb[0, :, 0].tolist() == [0, 0, 1, 100, 200, 255]


def test_float_pixels_of_unknown_range_are_refused(tmp_path):
    path = tmp_path / "float.png"  # a float TIFF under an image name: PIL reads the content, mode F
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(path, format="TIFF")
    with pytest.raises(DataError) as info:
        load_rgb(path)
    assert info.value.reason == ("'F' pixels (TIFF format, 32-bit integer or float) have no known range to map to 8 "
                                 "bits; convert the file to 8-bit RGB")


# -- 12. images that would exhaust memory --------------------------------------------------------------
def test_a_tiny_file_of_an_elongated_image_is_a_bad_image(tmp_path):
    path = tmp_path / "thin.png"
    Image.new("L", (1, 20000)).save(path)  # about 120 bytes; resized to shorter side 256: 3.9 GB
    assert path.stat().st_size < 1000
    with pytest.raises(DataError) as info:
        load_rgb(path)
    assert info.value.reason.startswith("1x20000 is more elongated than 100:1 (data.MAX_ASPECT_RATIO")
    assert str(path) in str(info.value)


@pytest.mark.parametrize("pil_limit", ["default", None], ids=["pil-limit", "pil-limit-off"])
def test_a_decompression_bomb_is_a_bad_image(tmp_path, monkeypatch, pil_limit):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(30000, 30000))  # 900 million pixels declared in 57 bytes
    if pil_limit is None:  # another library may have switched PIL's own check off: ours still holds
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(DataError) as info:
        load_rgb(path)
    assert "900,000,000 pixels" in info.value.reason or "DecompressionBombError" in info.value.reason
    path.write_bytes(png_header(10000, 10000))  # between PIL's limit and twice it PIL only warns
    with pytest.raises(DataError, match=r"10000x10000 is 100,000,000 pixels, more than the 89,478,485 allowed"):
        load_rgb(path)


def test_an_elongated_image_is_skipped_by_on_bad_image(sample_val, tmp_path):
    root = tmp_path / "val"
    source = sorted(sample_val.glob("*/*.JPEG"))[0]
    touch(root / source.parent.name / "good.JPEG", source.read_bytes())
    Image.new("RGB", (20000, 1)).save(root / source.parent.name / "thin.png")
    result = evaluate("resnet18_ibn_b", root, "std1.5", weights="random", workers=0, progress=False,
                      on_bad_image="skip")
    assert len(result.labels) == 1
    [skipped] = result.dataset["skipped"]
    assert skipped["image"].endswith("thin.png") and "more elongated than 100:1" in skipped["error"]


# -- 4 and 11. downloads: keyed by URL, rejected files not cached, timeouts, SIGTERM -----------------------------
def hub_files() -> list[str]:
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def test_two_urls_of_the_same_file_name_do_not_share_a_cache_file(local_server, tmp_path):
    server, root = local_server
    for sub, value in (("a", 1.0), ("b", 2.0)):
        (root / sub).mkdir()
        torch.save({"w": torch.full((3,), value)}, root / sub / "checkpoint.pth")
    path_a, sha_a = fetch(server.url("a/checkpoint.pth"), None, progress=False)
    path_b, sha_b = fetch(server.url("b/checkpoint.pth"), None, progress=False)
    # Before: the second URL got the first file, and the record showed the second URL with the first sha256.
    assert path_a != path_b and path_a.name == path_b.name == "checkpoint.pth"
    assert (sha_a, sha_b) == (file_sha256(root / "a" / "checkpoint.pth"), file_sha256(root / "b" / "checkpoint.pth"))
    assert torch.load(path_b, weights_only=True)["w"].tolist() == [2.0, 2.0, 2.0]
    assert fetch(server.url("a/checkpoint.pth"), None, progress=False) == (path_a, sha_a)  # a hit, by URL
    assert server.requests == 2


def test_a_file_named_with_its_checked_hash_keeps_the_torch_hub_name(local_server):
    server, root = local_server
    torch.save({"w": torch.zeros(2)}, root / "tmp.pth")
    digest = file_sha256(root / "tmp.pth")
    (root / "tmp.pth").rename(root / f"net-{digest[:8]}.pth")
    path, _ = fetch(server.url(f"net-{digest[:8]}.pth"), digest[:8], progress=False)
    assert path == Path(torch.hub.get_dir()) / "checkpoints" / f"net-{digest[:8]}.pth"  # where torchvision looks


class Payload:
    """A pickled object: torch.load(weights_only=True) refuses it."""


@pytest.mark.parametrize("content", ["text", "pickle"])
def test_a_download_that_is_not_a_checkpoint_is_not_cached(local_server, content):
    server, root = local_server
    if content == "text":
        (root / "weights.pth").write_text("Moved to https://example.org/new-location\n")
    else:
        torch.save({"w": Payload()}, root / "weights.pth")
    with pytest.raises(WeightsError) as info:
        cached_download(server.url("weights.pth"), None, progress=False)
    assert f"{server.url('weights.pth')} sent a file that is not a readable checkpoint (" in str(info.value)
    assert "It was discarded (nothing cached)" in str(info.value)
    assert hub_files() == []  # before: it stayed in the cache and failed every later run


@pytest.fixture
def silent_server():
    """A socket on 127.0.0.1 that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/net.pth"


def test_a_server_that_never_answers_times_out_naming_the_url(silent_server, monkeypatch):
    monkeypatch.setenv(DOWNLOAD_TIMEOUT_ENV, "0.5")
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:  # before: it waited forever
        cached_download(silent_server, None, progress=False)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert message.startswith(f"no answer from {silent_server} within 0.5 s ({DOWNLOAD_TIMEOUT_ENV}): the server "
                              "does not respond.")
    assert f"raise the limit (e.g. {DOWNLOAD_TIMEOUT_ENV}=300)" in message and "weights='/path/to/net.pth'" in message
    assert hub_files() == []


def test_a_wrong_timeout_setting_is_named(monkeypatch):
    monkeypatch.setenv(DOWNLOAD_TIMEOUT_ENV, "soon")
    with pytest.raises(WeightsError, match=f"Expected {DOWNLOAD_TIMEOUT_ENV} to be a number of seconds > 0, but got "
                                           "'soon'"):
        cached_download("http://127.0.0.1:9/net.pth", None, progress=False)


class Stalling:
    """An HTTP server that sends the headers and the first kilobyte of a large file, then nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/big.pth"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.connections.append(conn)
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n" + b"\0" * 1024)

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.sock.close()


def test_sigterm_during_a_download_leaves_no_temporary_file(tmp_path):
    server = Stalling()
    script = ("import sys; from robustbench_ibn.hub import cached_download; "
              "cached_download(sys.argv[1], None, progress=False)")
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), DOWNLOAD_TIMEOUT_ENV: "60"}
    child = subprocess.Popen([sys.executable, "-c", script, server.url], env=env, stderr=subprocess.PIPE)
    try:
        checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
        deadline = time.monotonic() + 60
        while not list(checkpoints.rglob("*.download")) and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert list(checkpoints.rglob("*.download")), child.stderr.read().decode() if child.poll() is not None else ""
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    finally:
        child.kill()
        server.close()
    assert child.returncode == 128 + signal.SIGTERM  # before: killed at once (-15), its temporary file left behind
    assert [p for p in checkpoints.rglob("*") if p.is_file()] == []


# -- 7, 9, 10. leaderboard entries: non-finite numbers, names that are paths, markup -------------------------------
def test_non_finite_numbers_in_an_entry_are_named(tmp_path):
    path = save_entry(make_result("resnet50"), tmp_path, n_boot=20)
    entry = json.loads(path.read_text())
    entry["results"][1]["top1_drop"] = float("nan")
    entry["mean_drop"]["top1"] = float("inf")
    path.write_text(json.dumps(entry))  # json writes NaN and Infinity, and reads them back as floats
    with pytest.raises(LeaderboardError) as info:  # before: the NaN scrambled the ranking of its group
        load_entries(tmp_path)
    assert str(info.value) == (f"Expected finite numbers in leaderboard entry {path}, but results[1].top1_drop is "
                               "nan (and 1 more: mean_drop.top1). Fix or re-create the file.")


def test_non_finite_numbers_in_a_result_record_are_named(tmp_path, capsys):
    record = make_result("resnet50").to_dict()
    record["domains"][1]["shift"]["params"]["amount"] = float("nan")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record))
    assert report_main([str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"robust-report: error: Expected finite numbers in result record {path}, "
                                              "but domains[1].shift.params.amount is nan.")


def test_check_finite_names_the_field_for_any_reader():
    check_finite({"a": [1.0, {"b": 2}], "c": None}, "record.json")
    with pytest.raises(ValueError, match=r"record\.json, but predictions\[0\]\.x is -inf"):
        check_finite({"predictions": [{"x": float("-inf")}]}, "record.json")


@pytest.mark.parametrize("model", ["../../outside", "/abs/path", "hub:/dir:entry", "..", "a\0b"])
def test_a_model_name_never_leaves_the_measured_folder(tmp_path, model):
    board = tmp_path / "board"
    path = save_entry(make_result(model), board, n_boot=20)
    assert path.parent == board / "measured" and path.is_file()  # before: ../ escaped, hub:/dir: nested folders
    assert [p.relative_to(board).as_posix() for p in board.rglob("*") if p.is_file()] == [f"measured/{path.name}"]
    assert [e["model"] for e in load_entries(board, packaged=False)] == [model]  # ... and the nested entry vanished


def test_markup_in_an_entry_is_shown_as_text(tmp_path):
    name = "<img src=x onerror=alert(1)> a|b <!-- [x](javascript:y) `c` *d*"
    entry = entry_from_result(make_result("resnet50"), n_boot=20)
    entry["display_name"] = name
    page = leaderboard_markdown([entry])
    lines = page.splitlines()
    row = next(line for line in lines if "onerror" in line)
    header = lines[lines.index(row) - 2]
    assert "<" not in row  # no tag, no comment
    cells = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    assert len(cells) == len(header.strip().strip("|").split("|"))  # the name did not split the row
    assert (r"&lt;img src=x onerror=alert(1)&gt; a\|b &lt;!-- [x]\(javascript:y) \`c\` \*d\* (`resnet50`)"
            in cells[1])
    assert page.rstrip().endswith("No reported entries.")  # nothing after the name was hidden in a comment


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("date", "<!-- 2024", "Expected 'date' to be an ISO 8601 date"),
        ("date", "2024-13-01", "Expected 'date' to be an ISO 8601 date"),
        ("fingerprint", "48b554f8<b>", "Expected protocol.fingerprint to be hexadecimal"),
        ("sha256", "`|`", "Expected weights.sha256 to be null or 64 hexadecimal digits"),
    ],
)
def test_dates_fingerprints_and_digests_are_checked_by_format(tmp_path, field, value, expected):
    path = save_entry(make_result("resnet50"), tmp_path, n_boot=20)
    entry = json.loads(path.read_text())
    if field == "date":
        entry["date"] = value
    elif field == "fingerprint":
        entry["protocol"]["fingerprint"] = value
    else:
        entry["weights"]["sha256"] = value
    path.write_text(json.dumps(entry))
    with pytest.raises(LeaderboardError, match=re.escape(expected)) as info:
        load_entries(tmp_path)
    assert str(path) in str(info.value)


def test_iso_dates():
    assert all(map(is_iso_date, ["2018", "2018-09", "2018-09-08", "2026-11-20T22:22:05+00:00", "2024-05-06 07:08Z"]))
    assert not any(map(is_iso_date, ["", "18", "2018-9", "2018-02-30", "2018-09-08T25:00", "2018 <b>", 2018]))


@pytest.mark.parametrize("content", ["[" * 100_000 + "]" * 100_000, '{"n": ' + "9" * 5000 + "}"],
                         ids=["deeply-nested", "5000-digit-integer"])
def test_an_entry_that_json_cannot_build_is_named(tmp_path, capsys, content):
    (tmp_path / "measured").mkdir()
    path = tmp_path / "measured" / "e.json"
    path.write_text(content)
    with pytest.raises(LeaderboardError, match=re.escape(f"Expected a leaderboard entry (JSON) in {path}, but it "
                                                         "cannot be parsed: ")):
        load_entries(tmp_path)  # before: a RecursionError or a ValueError traceback
    assert leaderboard_main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("robust-leaderboard: error: Expected a leaderboard entry (JSON)")
    with pytest.raises(ValueError, match="cannot be parsed"):
        read_json(path)


def test_report_escapes_names_for_markdown_and_latex():
    result = make_result("net_$^~{}&%#\\ <b>|x")
    markdown = format_report([result])
    table = [line for line in markdown.splitlines() if line.startswith("| transform")][0]
    assert r"| net\_$" not in table and r"net\_\$^\~{}&%#\\ &lt;b&gt;\|x" in table
    latex = format_report([result], "latex")
    assert (r"Transform & net\_\$\textasciicircum{}\textasciitilde{}\{\}\&\%\#\textbackslash{} \textless{}b"
            r"\textgreater{}\textbar{}x \\") in latex.splitlines()


def test_a_record_with_a_malformed_severity_is_an_error_naming_the_field(tmp_path, capsys):
    record = make_result("resnet50").to_dict()
    for bad in ("k", ["rgb+{k}", "k", 50], {"family": "rgb+{k}", "param": "k", "value": 50, "identity": "0"}):
        record["domains"][1]["shift"]["severity"] = bad
        path = tmp_path / "r.json"
        path.write_text(json.dumps(record))
        assert report_main([str(path)]) == 2  # before: a TypeError traceback
        err = capsys.readouterr().err
        assert err.startswith(f"robust-report: error: Expected domains[1].shift to be null or a shift definition (a "
                              f"string name; severity null or {{family, param, value, identity: number or null}}) "
                              f"in result record {path}"), err


# -- file names from names ----------------------------------------------------------------------------------
def test_safe_filename_examples():
    assert safe_filename("../../etc/passwd", ".json").startswith("etc_passwd-")
    assert safe_filename("a/b") != safe_filename("a_b") and "/" not in safe_filename("hub:/dir:entry")
    assert safe_filename("..") not in (".", "..") and not safe_filename(".hidden").startswith(".")
    with pytest.raises(ValueError, match="suffix"):
        safe_filename("x", "/../.json")


# -- the stylized-crop cache taken as untrusted -----------------------------------------------------------------
@pytest.fixture
def cache(tmp_path) -> tuple[Path, StyleCache, Path]:
    """A cache root with one good entry (8x8) in namespace monet-test."""
    store = StyleCache("monet-test", {"style": "monet"}, tmp_path / "root")
    entry = store.put("ab" * 32, np.full((8, 8, 3), 7, dtype=np.uint8))
    return tmp_path / "root", store, entry


def test_a_broken_link_in_the_cache_is_counted_not_a_traceback(cache, capsys):
    root, store, entry = cache
    (entry.parent / ("cd" * 32 + ".png")).symlink_to(entry.parent / "nowhere.png")
    [info] = cache_info(root)  # before: FileNotFoundError from stat()
    assert (info.entries, info.unreadable) == (1, 1)
    assert cache_cli.main(["--dir", str(root), "info"]) == 0
    out = capsys.readouterr().out
    assert "1 crops" in out and "1 not readable (run verify)" in out


def test_verify_delete_bad_leaves_a_folder_named_like_an_entry(cache, capsys):
    root, store, entry = cache
    folder = entry.parent / ("ef" * 32 + ".png")
    (folder / "mine").mkdir(parents=True)
    good, bad = verify_cache(root, delete_bad=True)  # before: IsADirectoryError from unlink()
    assert good == 1 and bad == [(folder, "a folder, not an entry; not deleted (a folder: remove it yourself if it "
                                          "is not yours to keep)")]
    assert (folder / "mine").is_dir()
    assert cache_cli.main(["--dir", str(root), "verify", "--delete-bad"]) == 1  # something bad is left
    assert "except 1 left in place" in capsys.readouterr().out


def test_a_bomb_where_an_entry_should_be_is_a_miss_and_bad(cache):
    root, store, entry = cache
    entry.write_bytes(png_header(30000, 30000))
    with pytest.warns(UserWarning, match="it will be regenerated"):  # before: DecompressionBombError traceback
        assert store.get("ab" * 32, 8, 8) is None
    [(path, problem)] = verify_cache(root)[1]
    assert path == entry and problem.startswith("unreadable (")
    entry.write_bytes(png_header(4000, 4000))  # within PIL's limit, but not this entry's size: never decoded
    with pytest.warns(UserWarning, match="its header says 4000x4000, expected 8x8"):
        assert store.get("ab" * 32, 8, 8) is None


def test_clear_removes_a_linked_namespace_as_a_link(cache, tmp_path, capsys):
    root, store, entry = cache
    outside = tmp_path / "precious"
    (outside / "8x8").mkdir(parents=True)
    (outside / "8x8" / "keep.png").write_bytes(b"not the cache's")
    (root / "style" / "monet-linked").symlink_to(outside)
    assert cache_cli.main(["--dir", str(root), "clear", "monet-linked", "--yes"]) == 0  # before: OSError from rmtree
    assert f"removed the link {root / 'style' / 'monet-linked'} (its target {outside} was left as it is)" in \
        capsys.readouterr().out
    assert (outside / "8x8" / "keep.png").read_bytes() == b"not the cache's"
    assert not (root / "style" / "monet-linked").exists()
    assert [ns.name for ns in clear_cache(root)] == ["monet-test"] and not entry.exists()


# -- model kwargs (issues 13 and 17) -------------------------------------------------------------------------
def test_a_baseline_given_an_ablation_argument_says_which_models_take_it():
    with pytest.raises(ValueError) as info:  # before: TypeError from ResNet.__init__
        create_model("resnet18", "random", in_ratio=0.3)
    message = str(info.value)
    assert message.startswith("Expected model arguments of resnet18 (model_kwargs=) among num_classes, "
                              "zero_init_residual, groups, width_per_group, replace_stride_with_dilation, norm_layer, but "
                              "got 'in_ratio'.")
    assert "It is taken by 24 registered models: densenet121_ibn_a," in message


@pytest.mark.parametrize("name", ["resnet50_ibn_a", "densenet121_ibn_a", "tv:resnet18"])
def test_a_misspelt_model_argument_gets_a_did_you_mean(name):
    with pytest.raises(ValueError, match=rf"Expected model arguments of {re.escape(name)} .* but got 'num_clases'\. "
                                         r"Did you mean 'num_classes'"):
        create_model(name, "random", num_clases=10)


def test_the_ablation_arguments_of_ibn_models_are_accepted_and_their_values_checked():
    model = create_model("resnet18_ibn_a", "random", in_groups="1-2", in_ratio=0.25)
    assert model.layer1[0].bn1.IN.num_features == 16 and type(model.layer3[0].bn1).__name__ == "BatchNorm2d"
    for bad in ("nan", float("nan"), 1.5, True):
        with pytest.raises(ValueError, match=r"Expected in_ratio to be a number in \[0, 1\]"):
            create_model("resnet18_ibn_a", "random", in_ratio=bad)
    with pytest.raises(ValueError, match=r"Expected in_ratio to be a number in \[0, 1\]"):
        create_model("densenet121_ibn_a", "random", in_ratio="nan")


def test_robust_eval_model_kwargs_errors_are_error_lines(capsys, sample_val, tmp_path):
    root = tmp_path / "val"
    source = sorted(sample_val.glob("*/*.JPEG"))[0]
    touch(root / source.parent.name / source.name, source.read_bytes())
    for kwargs, expected in (("in_ratio=0.3", "It is taken by 24 registered models"),
                             ("in_ratio=nan", "Expected in_ratio to be a number in [0, 1]"),
                             ("in_grups=1", "Did you mean 'in_groups' or 'groups'?")):
        model = "resnet18" if kwargs == "in_ratio=0.3" else "resnet18_ibn_a"
        try:
            code = main(["--model", model, "--model-kwargs", kwargs, "--weights", "random", "--transforms", "std1.5",
                         "--data", str(root), "--workers", "0", "--no-progress"])
        except SystemExit as exit_:
            code = exit_.code
        err = capsys.readouterr().err
        assert code == 2 and "robust-eval: error: " in err and expected in err, err

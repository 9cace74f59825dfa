"""Leaderboards: entries, ranking within one protocol only, the generated page, and the paper's numbers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from robustbench_ibn.cli.leaderboard import main as leaderboard_main
from robustbench_ibn.files import safe_filename
from robustbench_ibn.leaderboard import (
    ENTRY_SCHEMA_VERSION,
    LeaderboardError,
    entry_from_result,
    leaderboard_markdown,
    load_entries,
    rank_entries,
    save_entry,
    write_leaderboard,
)
from test_report import make_result

ROOT = Path(__file__).resolve().parents[1]
LEADERBOARDS = ROOT / "leaderboards"
PACKAGED = ROOT / "robustbench_ibn" / "reported"
PAPER = ROOT.parent / "shared" / "reference" / "PAPER.md"


def test_committed_page_is_regenerated_exactly():
    # The page is never edited by hand: regenerating it from the committed entries gives the committed file.
    expected = leaderboard_markdown(load_entries(LEADERBOARDS))
    assert (LEADERBOARDS / "README.md").read_text(encoding="utf-8") == expected, (
        "leaderboards/README.md is out of date with its entries: run `robust-leaderboard leaderboards`."
    )
    assert leaderboard_main([str(LEADERBOARDS), "--check"]) == 0


def _paper_table(heading: str) -> list[list[str]]:
    text = PAPER.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    section = section[section.index("\n|"):]
    rows = []
    for line in section.splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return [r for r in rows if not set("".join(r)) <= set("-")][1:]  # drop the header and separator rows


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+", cell)]


def _reported() -> dict[tuple[str, str], dict]:
    entries = [e for e in load_entries(LEADERBOARDS) if e["kind"] == "reported"]
    return {(e["source"]["key"], e["display_name"]): e for e in entries}


def _cell(entry: dict, transform: str) -> list[float]:
    row = next(r for r in entry["results"] if r["transform"] == transform)
    values = [row["top1_err"], row["top5_err"]]
    return values + ([row["top1_drop"], row["top5_drop"]] if transform != "clean" else [])


def test_reported_entries_are_the_papers_tables():
    reported = _reported()
    # Table 1: rows are transforms, columns ResNet50, IBN-Net50-a, IBN-Net50-b.
    transforms = ["clean", "rgb+50", "r+50", "std1.5", "monet"]
    rows = _paper_table("## Table 1")
    assert [r[0] for r in rows] == ["origin", "RGB+50", "R+50", "std x1.5", "Monet"]
    for row, transform in zip(rows, transforms):
        for column, model in enumerate(["ResNet50", "IBN-Net50-a", "IBN-Net50-b"], start=1):
            assert _cell(reported[("paper-table1", model)], transform) == _numbers(row[column]), (model, transform)
    # Table 2: re-implementation and IBN-Net-a columns.
    rows = _paper_table("## Table 2")
    assert len(rows) == 6
    for name, _original, reimpl, ibn_a in rows:
        assert _cell(reported[("paper-table2", name)], "clean") == _numbers(reimpl)
        assert _cell(reported[("paper-table2", f"{name}-IBN-a")], "clean") == _numbers(ibn_a)
    # Table 3: origin and Monet of every variant.
    rows = _paper_table("## Table 3")
    assert len(rows) == 7
    for name, origin, monet in rows:
        entry = reported[("paper-table3", name.replace(" x2", "×2"))]
        assert _cell(entry, "clean") == _numbers(origin) and _cell(entry, "monet") == _numbers(monet)
    # The official README's ResNet-18/34 numbers, quoted in PAPER.md's prose.
    text = PAPER.read_text(encoding="utf-8")
    for depth in (18, 34):
        base, ibn = re.search(rf"ResNet-{depth}\s+\((\d+\.\d+/\d+\.\d+) -> (\d+\.\d+/\d+\.\d+)", text).groups()
        assert _cell(reported[("official-readme", f"ResNet-{depth}")], "clean") == _numbers(base)
        assert _cell(reported[("official-readme", f"ResNet-{depth}-IBN-a")], "clean") == _numbers(ibn)
    assert len(reported) == 3 + 12 + 7 + 4 + 1  # + torchvision ResNet-50 on the natural-shift sets
    assert all(e["n"] == 50000 and e["weights"]["kind"] == "reported" for e in reported.values())


def test_page_keeps_reported_apart_and_ranks_table1_by_mean_drop():
    page = (LEADERBOARDS / "README.md").read_text(encoding="utf-8")
    measured, reported = page.split("## Reported")
    assert "## Measured" in measured and "authors' trained model" not in measured
    table1 = reported.split("### ")[1]
    ranked = [line.split(" | ")[1] for line in table1.splitlines() if re.match(r"\| \d+ \|", line)]
    assert ranked == ["IBN-Net50-b (`resnet50_ibn_b`)", "IBN-Net50-a (`resnet50_ibn_a`)", "ResNet50 (`resnet50`)"]
    # mean top-1 drop over RGB+50, R+50, std×1.5 and Monet: (0.18 + 1.46 + 0.00 + 26.81) / 4 = 7.11
    assert "| 50.45/25.22 (26.81/18.36) | 7.11 | 50000 | 2018 |" in table1


def test_measured_entry_fields_and_replacement(tmp_path):
    result = make_result("resnet50")
    path = save_entry(result, tmp_path, n_boot=100)
    fingerprint = result.protocol["fingerprint"]
    assert path == tmp_path / "measured" / safe_filename(f"resnet50__0123456789ab__{fingerprint}", ".json")
    assert path.name.startswith(f"resnet50__0123456789ab__{fingerprint}-")  # readable, plus a hash of the name
    entry = json.loads(path.read_text(encoding="utf-8"))
    assert entry["schema_version"] == ENTRY_SCHEMA_VERSION and entry["kind"] == "measured"
    assert entry["protocol"]["fingerprint"] == fingerprint and entry["protocol"]["dataset"]["n"] == 100
    assert "root" not in entry["protocol"]["dataset"]  # no machine paths in a shared entry
    assert [t["name"] for t in entry["protocol"]["transforms"]] == ["clean", "rgb+50", "std1.5"]
    assert entry["n"] == 100 and entry["date"] == "2024-05-06T07:08:09+00:00" and entry["weights_id"] == "0123456789ab"
    rgb = entry["results"][1]
    assert (rgb["top1_err"], rgb["top1_drop"], rgb["flip_rate"]) == (30.0, 10.0, 10.0)
    assert rgb["top1_drop_ci"][0] <= 10.0 <= rgb["top1_drop_ci"][1]
    assert entry["mean_drop"]["top1"] == pytest.approx(20.0) and entry["uncertainty"]["n_boot"] == 100
    # Same model, weights and protocol: the entry is replaced, not duplicated.
    assert save_entry(make_result("resnet50", date="2025-01-01T00:00:00+00:00"), tmp_path, n_boot=100) == path
    assert [e["date"] for e in load_entries(tmp_path, packaged=False)] == ["2025-01-01T00:00:00+00:00"]


def test_ranking_within_one_protocol(tmp_path):
    entries = [
        entry_from_result(make_result("a", {"clean": (20, 5), "rgb+50": (30, 6), "std1.5": (40, 7)}), n_boot=50),
        entry_from_result(make_result("b", {"clean": (25, 5), "rgb+50": (26, 6), "std1.5": (27, 7)}, sha256="1" * 64),
                          n_boot=50),
    ]
    ranked = rank_entries(entries)
    assert [(rank, e["model"]) for rank, e in ranked] == [(1, "b"), (2, "a")]
    other = entry_from_result(make_result("d", {"clean": (20, 5), "r+50": (30, 6)}), n_boot=50)
    with pytest.raises(LeaderboardError, match="one protocol") as err:
        rank_entries([*entries, other])
    assert other["protocol"]["fingerprint"] in str(err.value)
    reported = json.loads(next(PACKAGED.glob("paper-table1__*.json")).read_text(encoding="utf-8"))
    with pytest.raises(LeaderboardError, match="never ranked with measured"):
        rank_entries([entries[0], reported])
    page = leaderboard_markdown([*entries, other])
    assert page.count("### Protocol `") == 2
    group = next(g for g in page.split("### Protocol `")[1:] if g.startswith(entries[0]["protocol"]["fingerprint"]))
    assert [line.split(" | ")[0] for line in group.splitlines() if line.startswith("| ") and "rank" not in line] == [
        "| 1", "| 2"]
    assert ("| b | official `111111111111` | 256 bilinear / 224 | 25.00/5.00 | 26.00/6.00 (1.00/1.00) | 27.00/7.00 "
            "(2.00/2.00) | 1.50 [") in group
    assert "| 100 | 2024-05-06 |" in group and "protocol v2, fp32" in group


def test_models_with_other_geometry_rank_in_one_group():
    """The protocol is the images, shifts, precision and version: a 224-px and a 240-px model share a table."""
    small = make_result("resnet50", {"clean": (20, 5), "rgb+50": (30, 6)})
    large = make_result("efficientnet_b1", {"clean": (18, 4), "rgb+50": (22, 5)}, sha256="2" * 64, resize=272,
                        crop=240)
    assert small.protocol["fingerprint"] == large.protocol["fingerprint"]
    entries = [entry_from_result(r, n_boot=20) for r in (small, large)]
    assert [e["geometry"]["crop"] for e in entries] == [224, 240]
    page = leaderboard_markdown(entries)
    assert page.count("### Protocol `") == 1
    rows = [line for line in page.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [r.split(" | ")[1] for r in rows] == ["efficientnet_b1", "resnet50"]  # ranked together: 4.00 < 10.00
    assert "| 272 bilinear / 240 |" in rows[0] and "| 256 bilinear / 224 |" in rows[1]
    assert "| rank | model | weights | geometry | origin | RGB+50 |" in page


def test_random_init_results_never_reach_the_leaderboard(tmp_path):
    result = make_result("resnet50", random=True)
    with pytest.raises(LeaderboardError, match="random-init weights .* such checks belong in the tests"):
        save_entry(result, tmp_path)
    assert not (tmp_path / "measured").exists()
    entry = entry_from_result(make_result("resnet50"), n_boot=20)
    entry["weights"] = {**entry["weights"], "kind": "random", "sha256": None, "seed": 0}
    (tmp_path / "measured").mkdir()
    (tmp_path / "measured" / "old.json").write_text(json.dumps(entry), encoding="utf-8")
    with pytest.raises(LeaderboardError, match="holds random-init weights.*Delete the file"):
        load_entries(tmp_path)
    assert not list(LEADERBOARDS.glob("measured/*random*"))  # the committed page: trained and reported entries only


def test_load_entries_refuses_bad_entries(tmp_path):
    path = save_entry(make_result("a"), tmp_path, n_boot=20)
    entry = json.loads(path.read_text(encoding="utf-8"))
    (tmp_path / "measured" / "copy.json").write_text(json.dumps(entry), encoding="utf-8")
    with pytest.raises(LeaderboardError, match="one entry per"):
        load_entries(tmp_path)
    (tmp_path / "measured" / "copy.json").unlink()
    (tmp_path / "reported").mkdir()
    (tmp_path / "reported" / "wrong.json").write_text(json.dumps(entry), encoding="utf-8")
    with pytest.raises(LeaderboardError, match="kept apart"):
        load_entries(tmp_path)
    (tmp_path / "reported" / "wrong.json").unlink()
    path.write_text(json.dumps({**entry, "schema_version": 99}), encoding="utf-8")
    with pytest.raises(LeaderboardError, match="schema_version 1"):
        load_entries(tmp_path)
    with pytest.raises(LeaderboardError, match="no leaderboard folder|Expected a leaderboard folder"):
        load_entries(tmp_path / "nope")


def test_robust_leaderboard_command(tmp_path, capsys):
    board = tmp_path / "lb"
    shutil.copytree(LEADERBOARDS, board)
    assert leaderboard_main([str(board), "--check"]) == 0
    save_entry(make_result("resnet50"), board, n_boot=20)
    assert leaderboard_main([str(board), "--check"]) == 1
    assert "OUT OF DATE" in capsys.readouterr().err
    assert leaderboard_main([str(board)]) == 0
    assert "### Protocol `" in (board / "README.md").read_text(encoding="utf-8")
    assert write_leaderboard(board) == (board / "README.md", False)
    assert leaderboard_main([str(tmp_path / "missing")]) == 2

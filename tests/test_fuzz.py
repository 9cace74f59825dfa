"""Fuzzing (hypothesis) of everything parsed from user input or untrusted files: transform names and sweep
ranges, --model-kwargs, labels files, result records and leaderboard entries. Each may only fail with its
own error type, whose message the CLI prints; anything else (a TypeError, a decimal signal) is a bug."""

from __future__ import annotations

import argparse
import copy
import decimal
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from robustbench_ibn.cli._common import parse_kwargs
from robustbench_ibn.data import DataError, ImageNetVal, _read_labels, imagenet_classes, images_sha256, labels_sha256
from robustbench_ibn.leaderboard import LeaderboardError, entry_from_result, leaderboard_markdown, load_entries
from robustbench_ibn.report import format_report
from robustbench_ibn.labels import ImageNet1k
from robustbench_ibn.results import EvalResult, SourceResult, protocol_fingerprint
from robustbench_ibn.transforms import TRANSFORMS, TransformError, resolve_transform_names
from robustbench_ibn.transforms._base import expand_transform_range

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WNIDS = [wnid for wnid, _ in imagenet_classes()]

# Text that looks like what people type: names, numbers, the separators that matter.
NAMEISH = st.text(alphabet="rgbstdclanhuejpoiszmt+-.:,0123456789 ", max_size=40)
ANY_TEXT = st.text(max_size=60)


# -- transform names and sweep ranges ------------------------------------------------------------------------
@FUZZ
@given(st.one_of(NAMEISH, ANY_TEXT))
@example("rgb+0:99999999999999999999999999999:0.00000000000000000000000001")  # once a decimal DivisionImpossible
@example("rgb+\u0663:\u0665:1")  # non-ASCII digits
@example("std0." + "0" * 60 + "1:1:1")  # once rounded into a whole number of steps
@example("rgb+100000001000000010000000.01001:100000001000000010000000.01001:1")  # once rounded to 28 digits
def test_transform_names_only_raise_transform_error(text: str) -> None:
    try:
        names = resolve_transform_names(text)
    except TransformError as err:
        assert str(err)
        return
    assert names[0] == "clean" and len(set(names)) == len(names)
    assert all(name in TRANSFORMS for name in names)


NUMBER = st.one_of(
    st.integers(0, 300).map(str),
    st.decimals(0, 300, places=3).map(lambda d: format(d, "f")),
    st.from_regex(r"[0-9]{1,40}(\.[0-9]{0,40})?", fullmatch=True),
)


@FUZZ
@given(st.sampled_from(["rgb+", "r-", "b+", "std", "hue", "sat", "gamma", "jpeg", "noise", "temp", "clean", "x"]),
       NUMBER, NUMBER, NUMBER)
def test_sweep_ranges_expand_exactly_or_say_why_not(family: str, start: str, stop: str, step: str) -> None:
    item = f"{family}{start}:{stop}:{step}"
    try:
        members = expand_transform_range(item)
    except TransformError as err:
        assert item in str(err) or repr(item) in str(err)
        return
    values = [decimal.Decimal(m[len(family):]) for m in members]
    assert 1 <= len(members) <= 1000 and all(m in TRANSFORMS for m in members)
    assert values[0] == decimal.Decimal(start) and values[-1] == decimal.Decimal(stop)
    assert all(b - a == decimal.Decimal(step) for a, b in zip(values, values[1:]))


# -- --model-kwargs ----------------------------------------------------------------------------------------
LITERAL = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)
KEY = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@FUZZ
@given(st.dictionaries(KEY, LITERAL, max_size=4))
def test_model_kwargs_round_trip(kwargs: dict[str, Any]) -> None:
    assert parse_kwargs(",".join(f"{k}={v!r}" for k, v in kwargs.items())) == kwargs


@FUZZ
@given(st.one_of(ANY_TEXT, st.text(alphabet="ab=,()[]{}'\"\\:1.- ", max_size=40)))
@example("a={[1]: 2}")  # unhashable: once a TypeError
@example("a=" + "(" * 200)
@example("a=1,a=2")
def test_model_kwargs_only_raise_argument_type_error(text: str) -> None:
    try:
        parsed = parse_kwargs(text)
    except argparse.ArgumentTypeError as err:
        assert str(err).startswith("Expected ")
        return
    assert all(isinstance(k, str) and k.isidentifier() for k in parsed)


# -- labels files ------------------------------------------------------------------------------------------
LABEL_LINE = st.one_of(
    st.builds(lambda n, l: f"{n} {l}", st.from_regex(r"[a-z0-9_.]{1,12}", fullmatch=True),
              st.one_of(st.integers(-5, 1200).map(str), st.sampled_from(WNIDS[:5]), ANY_TEXT)),
    st.builds(lambda n, w: f"{n},{w} 1 2 3 4", st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True),
              st.one_of(st.sampled_from(WNIDS[:5]), ANY_TEXT)),
    ANY_TEXT,
)


@FUZZ
@given(st.one_of(st.lists(LABEL_LINE, max_size=6).map("\n".join).map(str.encode), st.binary(max_size=200)),
       st.sampled_from(["val.txt", "LOC_val_solution.csv"]),
       st.booleans())
@example(b"a.JPEG \xc2\xb2\n", "val.txt", False)  # "²" is a digit to str.isdigit(), not to int()
@example(b"a.JPEG " + b"9" * 5000 + b"\n", "val.txt", False)  # int() refuses over 4300 digits
@example(b"ImageId,PredictionString\na\x00,n01440764 1 2 3 4\n", "LOC_val_solution.csv", False)  # NUL: csv.Error
def test_labels_files_only_raise_data_error(content: bytes, name: str, kaggle_header: bool) -> None:
    if kaggle_header:
        content = b"ImageId,PredictionString\n" + content
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        try:
            labels = _read_labels(path)
        except DataError as err:
            assert str(path) in str(err)
        else:
            assert all(isinstance(v, int) and 0 <= v < 1000 for v in labels.values())
        # The public path: a flat folder with one image and this labels file.
        (Path(tmp) / "a.JPEG").write_bytes(b"")
        try:
            dataset = ImageNetVal(tmp, labels_file=path)
        except DataError:
            return
        assert dataset.samples == [("a.JPEG", dataset.samples[0][1])]


# -- result records and leaderboard entries -----------------------------------------------------------------
# Integers of any size too: JSON has no limit, and float() of one beyond 1.8e308 raises (a drop of 10**400).
HUGE = st.one_of(st.integers(), st.integers(308, 4000).map(lambda k: 10**k),
                 st.integers(308, 4000).map(lambda k: -10**k))
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2000, 2000), HUGE, st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=8,
)


def _result() -> EvalResult:
    """A record consistent with itself (digests and fingerprint recomputed from its images, labels and domains), so
    each damage below is the only thing wrong with it."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 1000, 6)
    images = [f"n0/{i}.JPEG" for i in range(6)]
    dataset = {"n": 6, "sha256": images_sha256(images), "labels_sha256": labels_sha256(labels), "kind": "imagenet-val",
               "label_space": ImageNet1k().to_dict(), "description": "six images"}
    domains = [{"name": "clean", "label": "origin", "source": "val", "stage": "crop", "shift": None, "paired": True},
               {"name": "std2", "label": "std×2", "source": "val", "stage": "crop", "paired": True,
                "shift": {"name": "std2", "label": "std×2", "version": 2, "params": {"factor": 2.0}}}]
    result = EvalResult(
        model="m", weights={"kind": "official", "sha256": "a" * 64, "description": "official m.pth"},
        data_config={"resize": 256, "crop": 224, "interpolation": "bilinear"},
        sources={"val": SourceResult(dataset, labels, images)},
        domains=domains,
        protocol={"version": 2, "precision": "fp32",
                  "fingerprint": protocol_fingerprint({"val": dataset}, domains, "fp32", 2)},
        environment={"date": "2024-01-01"},
        predictions={s: rng.integers(0, 1000, (6, 5)) for s in ("clean", "std2")},
    )
    return result


RECORD = _result().to_dict()
ENTRY = entry_from_result(_result(), n_boot=10)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place inside a JSON value (dict keys and list indices), the value itself first."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value[:3]):
            out += _paths(item, prefix + (i,))
    return out


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    value = copy.deepcopy(value)
    holder = value
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = new
    return value


def test_the_undamaged_record_and_entry_load(tmp_path) -> None:
    # Else every damage below would be refused for what the fixture itself got wrong, and the fuzzing test nothing.
    (tmp_path / "r.json").write_text(json.dumps(RECORD))
    assert EvalResult.load(tmp_path / "r.json").results[1].transform == "std2"
    (tmp_path / "measured").mkdir()
    (tmp_path / "measured" / "e.json").write_text(json.dumps(ENTRY))
    assert load_entries(tmp_path, packaged=False)[0]["model"] == "m"


@FUZZ
@given(st.sampled_from(_paths(RECORD)), JSON)
@example(("sources", "val", "n"), ":")  # once a ValueError from int() in the leaderboard entry
@example(("domains", 1), {})
@example(("domains", 1, "shift", "severity"), {"family": "std{factor}", "param": "factor", "value": 10**400})
@example(("protocol", "fast"), "yes")  # once an AttributeError in the report's header
def test_a_damaged_result_record_is_refused_or_still_reports(path: tuple, new: Any) -> None:
    damaged = _replace(RECORD, path, new)
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "r.json"
        file.write_text(json.dumps(damaged))
        try:
            result = EvalResult.load(file)
        except ValueError as err:
            assert str(file) in str(err)
            return
    # What was accepted must be usable: the table and a leaderboard entry are computed (or refused) cleanly.
    assert format_report([result], "markdown", n_boot=10)
    try:
        assert entry_from_result(result, n_boot=10)["results"]
    except LeaderboardError as err:  # e.g. no protocol fingerprint, or random-init weights: says so
        assert "fingerprint" in str(err) or "random-init" in str(err)


# A measured entry made here, and a reported one of the package (the paper's Table 1 numbers).
ENTRIES = {"measured": json.loads(json.dumps(ENTRY)),
           "reported": json.loads((Path(__file__).resolve().parents[1] / "robustbench_ibn" / "reported"
                                   / "paper-table1__resnet50_ibn_b.json").read_text(encoding="utf-8"))}
PLACES = [(kind, place) for kind, entry in ENTRIES.items() for place in _paths(entry)]


@FUZZ
@given(st.sampled_from(PLACES), JSON)
@example(("measured", ("display_name",)), [None])  # each of these once crashed the page with a TypeError or KeyError
@example(("measured", ("mean_drop", "top1")), [])
@example(("measured", ("protocol", "transforms", 1)), {})
@example(("measured", ("protocol", "transforms", 1, "source")), [])  # once a TypeError in the protocol-3 note
@example(("measured", ("protocol", "sources")), 1)  # ... and an AttributeError
@example(("measured", ("results", 1, "top5_drop")), None)
@example(("reported", ("source", "notes")), True)
@example(("reported", ("protocol", "transforms", 0)), "clean")  # bare names are what reported entries hold
@example(("measured", ("results", 1, "top1_drop")), 10**400)  # once an OverflowError in the page's cell
@example(("measured", ("mean_drop", "top1")), -10**400)  # ... and in the ranking
@example(("measured", ("protocol", "fast")), "yes")
def test_a_damaged_leaderboard_entry_is_refused_or_still_ranks(where: tuple, new: Any) -> None:
    kind, place = where
    damaged = _replace(ENTRIES[kind], place, new)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / kind).mkdir()
        (Path(tmp) / kind / "e.json").write_text(json.dumps(damaged))
        try:
            entries = load_entries(tmp, packaged=False)  # the copy of a packaged entry would be refused as one
        except LeaderboardError as err:
            assert "e.json" in str(err)
            return
    assert leaderboard_markdown(entries).startswith("# Leaderboards")

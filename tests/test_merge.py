"""`speechkit merge`: shard outputs into one file, with duplicate and missing ids reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechkit.data import Item, Result, dumps_line, read_results
from speechkit.errors import SpeechkitError
from speechkit.inputs import write_manifest
from speechkit.merge import merge_results
from tests.test_cli import speechkit


def _shard(path: Path, *results: Result) -> Path:
    path.write_text("".join(dumps_line(r.to_dict()) for r in results), encoding="utf-8")
    return path


def _ok(i: str, text: str = "hello") -> Result:
    return Result(id=i, path=f"{i}.wav", text=text)


def _failed(i: str) -> Result:
    return Result(id=i, path=f"{i}.wav", status="error", error=f"{i}.wav: could not decode")


def test_shards_merge_into_one_line_per_id_in_manifest_order(tmp_path):
    a = _shard(tmp_path / "a.jsonl", _ok("3"), _ok("1"))
    b = _shard(tmp_path / "b.jsonl", _ok("2"))
    expected = [Item(id=i, path=f"{i}.wav") for i in ("1", "2", "3")]

    report = merge_results(tmp_path / "all.jsonl", [a, b], expected)

    ids = [json.loads(line)["id"] for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert ids == ["1", "2", "3"]
    assert report.complete and report.written == 3 and report.duplicates == {}


def test_an_ok_line_wins_over_an_error_line_whichever_shard_comes_last(tmp_path):
    a = _shard(tmp_path / "a.jsonl", _ok("1", "first"), _ok("2"))
    b = _shard(tmp_path / "b.jsonl", _failed("1"), _ok("2"))

    report = merge_results(tmp_path / "all.jsonl", [a, b])

    merged = read_results(tmp_path / "all.jsonl")
    assert merged["1"].status == "ok" and merged["1"].text == "first"
    assert report.duplicates == {"1": [str(a), str(b)], "2": [str(a), str(b)]}
    assert report.differing == ["1"]  # the two lines of 2 agree


def test_ids_no_shard_has_are_reported_missing(tmp_path):
    a = _shard(tmp_path / "a.jsonl", _ok("1"), _failed("2"), _ok("stray"))
    expected = [Item(id=i, path=f"{i}.wav") for i in ("1", "2", "3")]

    report = merge_results(tmp_path / "all.jsonl", [a], expected)

    assert report.missing == ["3"] and report.failed == ["2"] and report.unexpected == ["stray"]
    assert not report.complete


def test_merge_does_not_replace_an_existing_file_unless_asked(tmp_path):
    a = _shard(tmp_path / "a.jsonl", _ok("1"))
    out = _shard(tmp_path / "all.jsonl", _ok("old"))
    with pytest.raises(SpeechkitError, match="--overwrite"):
        merge_results(out, [a])
    merge_results(out, [a], overwrite=True)
    assert list(read_results(out)) == ["1"]


def test_a_file_that_is_not_results_stops_the_merge_with_its_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "path": "1.wav"}\n{"text": "no id"}\n')
    with pytest.raises(SpeechkitError, match=r"bad.jsonl:2 is not a result line"):
        merge_results(tmp_path / "all.jsonl", [bad])


def test_the_merge_command_reports_duplicates_and_missing_ids_and_exits_1(tmp_path):
    a = _shard(tmp_path / "shard-0.jsonl", _ok("1"), _ok("2"))
    b = _shard(tmp_path / "shard-1.jsonl", _ok("2"))
    write_manifest([Item(id=i, path=str(tmp_path / f"{i}.wav")) for i in ("1", "2", "3")],
                   tmp_path / "manifest.jsonl")

    r = speechkit("merge", tmp_path / "all.jsonl", a, b, "--manifest", tmp_path / "manifest.jsonl")

    assert r.returncode == 1, r.stderr
    assert "duplicate: 2" in r.stderr and "missing: 3" in r.stderr
    assert list(read_results(tmp_path / "all.jsonl")) == ["1", "2"]


def test_shards_hold_every_item_once_and_merge_back_whole(tmp_path):
    from speechkit.merge import shard_items

    items = [Item(id=f"clip-{i:02d}", path=f"{i}.wav") for i in range(7)]
    parts = [shard_items(items, f"{k}/3") for k in range(3)]
    assert sorted(it.id for part in parts for it in part) == [it.id for it in items]
    assert [len(p) for p in parts] == [3, 2, 2]
    files = [_shard(tmp_path / f"s{k}.jsonl", *(_ok(it.id) for it in part))
             for k, part in enumerate(parts)]

    report = merge_results(tmp_path / "all.jsonl", files, items)

    assert report.complete and report.written == 7 and not report.duplicates


def test_a_shard_with_no_items_is_a_usage_error():
    from speechkit.merge import shard_items

    with pytest.raises(SpeechkitError, match="holds no items"):
        shard_items([Item(id="a", path="a.wav")], "1/2")

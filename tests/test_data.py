import json
import os

import pytest

from speechkit.data import (
    Item,
    Result,
    ResultWriter,
    Segment,
    expand_inputs,
    read_manifest,
    read_results,
)
from speechkit.errors import SpeechkitError
from speechkit.formats import parse_formats, to_srt, to_vtt


def test_manifest_reads_speechkit_and_nemo_lines_relative_to_manifest(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x")
    m = tmp_path / "m.jsonl"
    m.write_text(
        json.dumps({"id": "u1", "path": "a.wav", "reference": "hello", "language": "en"}) + "\n"
        + json.dumps({"audio_filepath": "/data/b.flac", "text": "world", "duration": 2.5,
                      "speaker": "s1"}) + "\n\n"
    )
    a, b = read_manifest(m)
    assert (a.id, a.path, a.reference, a.language) == ("u1", str(tmp_path / "a.wav"), "hello", "en")
    assert (b.id, b.path, b.reference, b.duration_s) == ("/data/b.flac", "/data/b.flac", "world", 2.5)
    assert b.meta == {"speaker": "s1"}


def test_bad_manifest_lines_become_error_items_not_crashes(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_bytes(b'{"path": "a.wav"}\nnot json\n[1, 2]\n{"text": "no path"}\n\xff\xfe\n')
    items = read_manifest(m)
    assert [it.error is None for it in items] == [True, False, False, False, False]
    assert "m.jsonl:2 is not valid JSON" in items[1].error
    assert "m.jsonl:3 is not a JSON object" in items[2].error
    assert "no media path" in items[3].error and '"path"' in items[3].error
    assert "not UTF-8" in items[4].error
    assert len({it.id for it in items}) == 5


def test_expand_inputs_directories_globs_and_missing_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.wav", "sub/b.MP4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    items = expand_inputs([str(tmp_path)])
    assert [os.path.basename(i.path) for i in items] == ["a.wav", "b.MP4"]
    globbed = expand_inputs([str(tmp_path / "**" / "*.MP4")])
    assert [os.path.basename(i.path) for i in globbed] == ["b.MP4"]
    missing = expand_inputs([str(tmp_path / "nope.wav"), str(tmp_path / "a.wav")])
    assert "no such file" in missing[0].error and missing[1].error is None
    with pytest.raises(SpeechkitError, match="matches no files"):
        expand_inputs([str(tmp_path / "*.flac")])
    # the same file named twice runs once
    assert len(expand_inputs([str(tmp_path / "a.wav"), str(tmp_path / "a.wav")])) == 1


def test_result_lines_round_trip_exactly(tmp_path):
    r = Result(id="x", path="/a.wav", text="héllo", segments=[Segment(0.0, 1.5, "héllo")],
               duration_s=1.5, extras={"p_yes": 0.5})
    with ResultWriter(tmp_path / "r.jsonl") as w:
        w.write(r)
    assert read_results(tmp_path / "r.jsonl")["x"] == r
    assert "héllo" in (tmp_path / "r.jsonl").read_text(encoding="utf-8")


def test_non_utf8_file_names_survive_the_jsonl(tmp_path):
    name = os.fsdecode(b"caf\xe9.wav")
    r = Result(id=name, path=name)
    with ResultWriter(tmp_path / "r.jsonl") as w:
        w.write(r)
    back = read_results(tmp_path / "r.jsonl")
    assert list(back) == [name]
    assert os.fsencode(back[name].path) == b"caf\xe9.wav"


def test_writer_resumes_ok_items_retries_errors_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultWriter(path) as w:
        w.write(Result(id="a", path="a"))
        w.write(Result(id="b", path="b", status="error", error="boom"))
    with open(path, "a") as fh:
        fh.write('{"id": "c", "path": "c", "sta')  # a crash in mid-line
    w = ResultWriter(path)
    assert w.done("a") and not w.done("b") and not w.done("c")
    w.write(Result(id="c", path="c"))
    w.close()
    assert set(read_results(path)) == {"a", "b", "c"}
    with ResultWriter(path, overwrite=True) as w:
        assert not w.done("a")


def test_item_dict_round_trip_keeps_unknown_fields_in_meta():
    it = Item.from_dict({"id": "1", "path": "p", "label": "hap", "meta": {"x": 1}})
    assert it.meta == {"x": 1, "label": "hap"}
    assert Item.from_dict(it.to_dict()) == it


def test_subtitles_render_timestamps_and_skip_empty_segments():
    r = Result(id="x", path="x.wav", text="one two", segments=[
        Segment(0.0, 1.25, "one"), Segment(1.25, 2.0, " "), Segment(3661.5, 3662.0, "two")])
    assert to_srt(r) == ("1\n00:00:00,000 --> 00:00:01,250\none\n\n"
                         "2\n01:01:01,500 --> 01:01:02,000\ntwo\n")
    assert to_vtt(r).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\none\n")
    assert parse_formats("srt, TXT") == ("srt", "txt")
    with pytest.raises(SpeechkitError, match="unknown --output-format docx"):
        parse_formats("srt,docx")

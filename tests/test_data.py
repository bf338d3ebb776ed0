import json
import os

import pytest

from speechkit.data import Item, Result, Segment, read_results
from speechkit.errors import SpeechkitError
from speechkit.formats import parse_formats, to_srt, to_vtt
from speechkit.inputs import expand_inputs, read_manifest
from speechkit.results import ResultWriter


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
    assert path.read_bytes().endswith(b'"error": "boom"}\n')  # the torn line is cut off
    w.write(Result(id="c", path="c"))
    w.close()
    assert set(read_results(path)) == {"a", "b", "c"}
    assert len(path.read_text().splitlines()) == 3
    with ResultWriter(path, overwrite=True) as w:
        assert not w.done("a")


def test_item_dict_round_trip_keeps_unknown_fields_in_meta():
    it = Item.from_dict({"id": "1", "path": "p", "label": "hap", "speaker": "s1", "meta": {"x": 1}})
    assert it.label == "hap" and it.meta == {"x": 1, "speaker": "s1"}
    assert Item.from_dict(it.to_dict()) == it


def test_item_paths_are_written_relative_to_the_manifest_and_read_back(tmp_path):
    it = Item(id="t", path=str(tmp_path / "wav" / "b.wav"), enroll=str(tmp_path / "wav" / "a.wav"),
              label=1, references=["x", "y"])
    line = it.to_dict(tmp_path / "lists")
    assert (line["path"], line["enroll"]) == ("../wav/b.wav", "../wav/a.wav")
    assert Item.from_dict(line, tmp_path / "lists") == it


def test_manifest_line_with_badly_typed_fields_is_an_error_line(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"id": "a", "path": "a.wav", "enroll": 3}\n{"id": "b", "path": "b.wav", "meta": "x"}\n'
                 '{"id": "c", "path": "c.wav", "references": "one"}\n'
                 '{"id": "d", "path": "d.wav", "meta": {"enroll_path": ["x"]}}\n')
    errors = [it.error for it in read_manifest(m)]
    assert errors == ["m.jsonl:1: enroll is not text; fix or remove that line",
                      "m.jsonl:2: meta is not an object; fix or remove that line",
                      "m.jsonl:3: references is not a list of text; fix or remove that line",
                      "m.jsonl:4: enroll is not text; fix or remove that line"]


def test_older_manifest_lines_with_typed_keys_in_meta_read_into_the_fields():
    it = Item.from_dict({"id": "t", "path": "/b.wav", "meta": {"enroll_path": "/a.wav", "label": 0,
                                                             "references": ["x"], "suite": "v"}})
    assert (it.enroll, it.label, it.references, it.meta) == ("/a.wav", 0, ["x"], {"suite": "v"})


def test_subtitles_render_timestamps_and_skip_empty_segments():
    r = Result(id="x", path="x.wav", text="one two", segments=[
        Segment(0.0, 1.25, "one"), Segment(1.25, 2.0, " "), Segment(3661.5, 3662.0, "two")])
    assert to_srt(r) == ("1\n00:00:00,000 --> 00:00:01,250\none\n\n"
                         "2\n01:01:01,500 --> 01:01:02,000\ntwo\n")
    assert to_vtt(r).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\none\n")
    assert parse_formats("srt, TXT") == ("srt", "txt")
    with pytest.raises(SpeechkitError, match="unknown --output-format docx"):
        parse_formats("srt,docx")


def _lines(path, *objs):
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def test_nemo_segments_of_one_file_are_one_item_each(tmp_path):
    m = _lines(tmp_path / "m.jsonl",
               {"audio_filepath": "a.wav", "offset": 0, "duration": 2.5, "text": "one"},
               {"audio_filepath": "a.wav", "offset": 2.5, "duration": 2.5, "text": "two"},
               {"audio_filepath": "a.wav", "offset": 5.0, "text": "three"},
               {"audio_filepath": "b.wav", "duration": 3.25, "text": "whole"})
    items = expand_inputs([str(m)])
    assert [it.id for it in items] == ["a.wav#t=0,2.5", "a.wav#t=2.5,5", "a.wav#t=5", "b.wav"]
    assert [(it.offset_s, it.duration_s) for it in items] == [(0, 2.5), (2.5, 2.5), (5.0, None),
                                                             (0, 3.25)]
    assert all(it.error is None and it.path == str(tmp_path / it.id.split("#")[0]) for it in items)


def test_a_repeated_manifest_id_is_reported_not_dropped(tmp_path):
    m = _lines(tmp_path / "m.jsonl", {"path": "a.wav"}, {"path": "./a.wav"},
               {"id": "x", "path": "b.wav"}, {"id": "x", "path": "c.wav"})
    items = read_manifest(m)
    assert [it.id for it in items] == ["a.wav", "m.jsonl:2", "x", "m.jsonl:4"]
    assert "id 'a.wav' repeats line 1" in items[1].error
    assert "id 'x' repeats line 3" in items[3].error and '"id"' in items[3].error
    assert items[0].error is None and items[2].error is None


def test_bad_offset_or_duration_is_one_error_item_and_the_rest_is_read(tmp_path):
    bad = [{"offset": "abc"}, {"offset_s": [1, 2]}, {"offset": -1}, {"duration": 0},
           {"duration": "nan"}, {"duration_s": {"s": 1}}, {"offset": True}]
    m = _lines(tmp_path / "m.jsonl", *[{"path": f"{i}.wav", **b} for i, b in enumerate(bad)],
               {"path": "ok.wav", "offset": "1.5", "duration": 2})
    items = read_manifest(m)
    assert all(it.error for it in items[:-1])
    assert "m.jsonl:1: offset is \"abc\", not a number of seconds" in items[0].error
    assert "offset_s is [1, 2]" in items[1].error and "duration is 0" in items[3].error
    assert "more than 0" in items[3].error and "0 or more" in items[2].error
    assert (items[-1].error, items[-1].offset_s, items[-1].duration_s) == (None, 1.5, 2.0)


def test_ids_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.wav").write_bytes(b"x")
    _lines(data / "m.jsonl", {"path": "a.wav"}, {"path": "a.wav", "offset": 1})
    monkeypatch.chdir(tmp_path)
    from_above = expand_inputs(["data/m.jsonl", "data/a.wav"])
    monkeypatch.chdir(data)
    from_inside = expand_inputs(["m.jsonl", "./a.wav", "a.wav", str(data / "a.wav")])
    assert [it.id for it in from_above] == [it.id for it in from_inside] == [
        "a.wav", "a.wav#t=1", str(data / "a.wav")]
    assert {it.path for it in from_inside} == {str(data / "a.wav")}


def test_empty_folder_and_unmatched_pattern_are_errors_and_the_rest_still_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a.wav").write_bytes(b"x")
    items = expand_inputs([str(tmp_path / "empty"), str(tmp_path / "*.flac"),
                           str(tmp_path / "a.wav")])
    assert "no media files in this folder" in items[0].error
    assert "the pattern matches no files" in items[1].error
    assert items[2].error is None and len(items) == 3


def test_unreadable_subfolder_is_reported(tmp_path):
    import shutil
    import subprocess
    import sys

    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.wav").write_bytes(b"x")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b.wav").write_bytes(b"x")
    (tmp_path / "locked").chmod(0)
    cmd = [sys.executable, "-c", "import sys; from speechkit.inputs import expand_inputs; "
           "[print(it.id, '|', it.error) for it in expand_inputs([sys.argv[1]])]", str(tmp_path)]
    if os.geteuid() == 0:  # root reads any folder: drop the capabilities that let it
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout.splitlines()
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert out[0] == f"{tmp_path / 'ok' / 'a.wav'} | None"
    assert out[1].startswith(f"{tmp_path / 'locked'} | ")
    assert "cannot read this folder (Permission denied)" in out[1] and len(out) == 2


def test_manifest_languages_become_whisper_codes_and_an_unknown_one_is_that_lines_error(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(x) + "\n" for x in (
        {"id": "a", "path": "a.wav", "language": "English", "target_language": "german"},
        {"id": "b", "path": "b.wav", "lang": "zh-CN"},
        {"id": "c", "path": "c.wav", "language": "klingon"},
        {"id": "d", "path": "d.wav"})))
    a, b, c, d = read_manifest(m)
    assert (a.language, a.target_language, b.language, d.language) == ("en", "de", "zh", None)
    assert not (a.error or b.error or d.error)
    assert "language 'klingon' is not a language Whisper knows" in c.error and "m.jsonl:3" in c.error

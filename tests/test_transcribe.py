"""End-to-end transcription with the real default model on real recordings."""

import json
import os
import re
import shutil

import jiwer
import numpy as np
import pytest
from typer.testing import CliRunner

from speechkit.data import Item, read_results
from speechkit.inputs import expand_inputs
from speechkit.models.base import DecodeOptions
from speechkit.transcribe import transcribe_items

pytestmark = pytest.mark.slow


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def librivox(testdata, n=5):
    lines = (testdata / "librivox" / "transcription").read_text().splitlines()
    out = []
    for line in lines[:n]:
        m = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        out.append((testdata / "librivox" / f"{m.group(2)}.wav", m.group(1)))
    return out


def run(items, model, tmp_path, name="r.jsonl", **kw):
    stats = transcribe_items(items, model, DecodeOptions(), tmp_path / name, **kw)
    return stats, read_results(tmp_path / name)


def test_real_librivox_clips_come_out_right(whisper_base, testdata, tmp_path):
    clips = librivox(testdata)
    stats, results = run(expand_inputs([str(p) for p, _ in clips]), whisper_base, tmp_path)
    assert stats.ok == 5 and stats.failed == 0
    import jiwer

    refs = [ref for _, ref in clips]
    hyps = [words(results[str(p)].text) for p, _ in clips]
    assert jiwer.wer(refs, hyps) < 0.1, hyps
    r = results[str(clips[1][0])]
    assert r.language == "en" and r.status == "ok" and r.duration_s == pytest.approx(2.6, abs=0.5)
    assert r.decode["beam_size"] == 1 and r.model["name"] == "whisper-base"
    assert len(r.segments) == 1 and r.segments[0].start == 0.0


def cards(testdata, n=5):
    """Spoken card names (pocketsphinx-testdata cards/, recorded apart from LibriVox), with their words."""
    lines = (testdata / "cards" / "cards.transcription").read_text().splitlines()
    out = []
    for line in lines[:n]:
        m = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        out.append((testdata / "cards" / f"{m.group(2)}.wav", " ".join(m.group(1).split())))
    return out


def assert_batched_equals_one_at_a_time(model, paths, tmp_path):
    items = expand_inputs(paths)
    _, batched = run(items, model, tmp_path, "b.jsonl", batch_size=len(paths))
    _, single = run(items, model, tmp_path, "s.jsonl", batch_size=1)
    assert len(batched) == len(paths)
    assert {k: r.text for k, r in batched.items()} == {k: r.text for k, r in single.items()}


def test_batched_output_equals_one_at_a_time(whisper_base, testdata, tmp_path):
    # LibriVox and cards recordings, 1.1 to 7.1 s: a batch pads the shorter ones
    paths = [str(p) for p, _ in librivox(testdata, 3) + cards(testdata, 2)]
    assert_batched_equals_one_at_a_time(whisper_base, paths, tmp_path)


def test_batched_output_equals_one_at_a_time_on_dev_clips(whisper_base, testdata, dev_dir, tmp_path):
    paths = [str(p) for p, _ in librivox(testdata, 3)] + [
        str(dev_dir / "asr_en" / "whisper_jfk.flac"), str(dev_dir / "asr_en" / "lhotse_LJ002-0020.wav")]
    assert_batched_equals_one_at_a_time(whisper_base, paths, tmp_path)


def assert_detected_and_translated(model, path, language, tmp_path):
    item = expand_inputs([str(path)])
    _, res = run(item, model, tmp_path, f"{language}.jsonl")
    (r,) = res.values()
    assert r.language == language
    stats = transcribe_items(item, model, DecodeOptions(task="translate", language=language),
                             tmp_path / f"{language}-en.jsonl")
    (t,) = read_results(tmp_path / f"{language}-en.jsonl").values()
    assert stats.ok == 1 and t.task == "translate"
    ascii_ratio = sum(c.isascii() for c in t.text) / max(1, len(t.text))
    assert t.text and t.text != r.text and ascii_ratio > 0.95
    return r, t


def test_german_is_detected_and_translated_to_english(whisper_base, spoken, tmp_path):
    # eSpeak NG: "Guten Tag, meine Damen und Herren. Ich möchte Ihnen heute etwas über ..."
    r, t = assert_detected_and_translated(whisper_base, spoken["de"], "de", tmp_path)
    assert "guten tag" in words(r.text) and "good day" in words(t.text)


def test_french_is_detected(whisper_base, spoken, tmp_path):
    # eSpeak NG: "Bonjour à tous. Aujourd'hui, nous allons parler de la ville de Paris, ..."
    _, res = run(expand_inputs([str(spoken["fr"])]), whisper_base, tmp_path, "fr.jsonl")
    (r,) = res.values()
    assert r.language == "fr" and "bonjour" in words(r.text) and "paris" in words(r.text)


def test_german_recording_is_detected_and_translated_to_english(whisper_base, dev_dir, tmp_path):
    assert_detected_and_translated(whisper_base, dev_dir / "asr_multi" / "leopard_test_de.wav", "de",
                                   tmp_path)


def test_long_audio_is_segmented_with_times(whisper_base, testdata, make_media, tmp_path):
    clips = [str(p) for p, _ in librivox(testdata)]
    # 5 clips, each followed by 6 s of silence, twice over: about 90 s in all.
    inputs = []
    for c in clips * 2:
        inputs += ["-i", c]
    n = len(clips) * 2
    chain = "".join(f"[{i}:a]apad=pad_dur=6[a{i}];" for i in range(n))
    chain += "".join(f"[a{i}]" for i in range(n)) + f"concat=n={n}:v=0:a=1[out]"
    long = make_media("long.flac", *inputs, "-filter_complex", chain, "-map", "[out]")
    _, res = run(expand_inputs([str(long)]), whisper_base, tmp_path, "long.jsonl")
    (r,) = res.values()
    assert r.status == "ok" and r.duration_s > 60
    assert len(r.segments) >= 3 and all(s.end - s.start <= 30.0 for s in r.segments)
    assert all(a.end <= b.start for a, b in zip(r.segments, r.segments[1:], strict=False))
    reference = " ".join(words(ref) for _, ref in librivox(testdata))
    reference = f"{reference} {reference}"
    assert jiwer.wer(reference, words(r.text)) < 0.1  # every utterance, in order, both times
    assert words(r.text).count("amiable himself") == 2


def test_bad_inputs_get_error_lines_and_the_batch_goes_on(whisper_base, testdata, make_media,
                                                          tmp_path):
    good = librivox(testdata, 1)[0][0]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(good.read_bytes()[:44] + os.urandom(2000))
    truncated = tmp_path / "truncated.mp4"
    full = make_media("full.mp4", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=25:duration=2",
                      "-f", "lavfi", "-i", "sine=frequency=300:duration=2", "-shortest")
    truncated.write_bytes(full.read_bytes()[:3000])
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "text.wav"
    text.write_text("hello, I am not audio")
    video_only = make_media("video_only.mp4", "-f", "lavfi", "-i",
                            "testsrc=size=64x64:rate=25:duration=1")
    odd_name = tmp_path / os.fsdecode(b"caf\xe9.wav")
    shutil.copy(good, odd_name)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": str(good), "text": "x"}) + "\nnot json\n")
    items = expand_inputs([str(p) for p in (corrupt, truncated, empty, text, video_only, odd_name,
                                            tmp_path / "missing.wav", manifest)])
    stats, res = run(items, whisper_base, tmp_path, "bad.jsonl")
    by_name = {os.path.basename(r.path) or r.id: r for r in res.values()}
    assert stats.total == 9 and stats.ok == 2 and stats.failed == 7
    assert by_name[os.fsdecode(b"caf\xe9.wav")].status == "ok"
    assert by_name[good.name].status == "ok"
    assert "no audio stream" in by_name["video_only.mp4"].error
    assert "empty" in by_name["empty.wav"].error.lower()
    assert "no such file" in by_name["missing.wav"].error
    assert "not valid JSON" in by_name["m.jsonl:2"].error
    for name in ("corrupt.wav", "truncated.mp4", "text.wav"):
        assert by_name[name].status == "error" and by_name[name].error.count("\n") == 0


def test_silence_is_an_empty_transcript_not_a_hallucination(whisper_base, make_media, tmp_path):
    quiet = make_media("quiet.wav", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "5")
    _, res = run(expand_inputs([str(quiet)]), whisper_base, tmp_path, "q.jsonl")
    (r,) = res.values()
    assert r.status == "ok" and r.text == "" and "silent" in r.extras["note"]


def test_rerun_resumes_and_only_redoes_failures(whisper_base, testdata, tmp_path):
    good = [str(p) for p, _ in librivox(testdata, 2)]
    items = expand_inputs(good + [str(tmp_path / "later.wav")])
    stats, _ = run(items, whisper_base, tmp_path)
    assert (stats.ok, stats.failed) == (2, 1)
    shutil.copy(good[0], tmp_path / "later.wav")  # the user fixes the missing file
    stats, res = run(expand_inputs(good + [str(tmp_path / "later.wav")]), whisper_base, tmp_path)
    assert (stats.skipped, stats.ok, stats.failed) == (2, 1, 0)
    assert all(r.status == "ok" for r in res.values())


def test_cli_transcribes_one_file_prints_it_and_writes_subtitles(testdata, tmp_path):
    from speechkit.cli import _register_subcommands, app

    _register_subcommands()
    clip = librivox(testdata, 2)[1][0]
    result = CliRunner().invoke(app, ["transcribe", str(clip), "--output-dir", str(tmp_path),
                                      "--format", "srt,vtt,txt", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "he was not an ill disposed young man" in words(result.stdout)
    files = sorted(p.suffix for p in tmp_path.iterdir())
    assert files == [".jsonl", ".srt", ".txt", ".vtt"]
    (line,) = (tmp_path / "transcripts.jsonl").read_text().splitlines()
    rec = json.loads(line)
    for key in ("id", "path", "task", "language", "text", "segments", "duration_s", "model",
                "decode", "status", "error"):
        assert key in rec


def test_cli_prints_each_transcript_of_several_files_in_input_order(testdata, tmp_path):
    from speechkit.cli import _register_subcommands, app

    _register_subcommands()
    clips = [str(clip) for clip, _ in librivox(testdata, 2)]
    args = ["transcribe", *reversed(clips), "--output-dir", str(tmp_path), "--device", "cpu"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert [ln.split(": ", 1)[0] for ln in lines] == list(reversed(clips))
    assert all(len(words(ln.split(": ", 1)[1]).split()) > 3 for ln in lines)
    again = CliRunner().invoke(app, args)  # nothing left to do: the same lines from the file
    assert again.exit_code == 0 and again.stdout.splitlines() == lines


def test_cli_exit_codes(testdata, tmp_path):
    from speechkit.cli import _register_subcommands, app

    _register_subcommands()
    runner = CliRunner()
    clip = str(librivox(testdata, 1)[0][0])
    some_failed = runner.invoke(app, ["transcribe", clip, str(tmp_path / "nope.wav"),
                                      "-o", str(tmp_path / "r.jsonl")])
    assert some_failed.exit_code == 1
    usage = runner.invoke(app, ["transcribe", clip, "--beam-size", "0"])
    assert usage.exit_code == 2


def test_int8_matches_float32_on_real_speech(testdata, tmp_path):
    from speechkit.models.registry import RuntimeOptions, load_model

    model = load_model("whisper-base", RuntimeOptions(device="cpu", dtype="int8"))
    clips = librivox(testdata, 3)
    _, res = run(expand_inputs([str(p) for p, _ in clips]), model, tmp_path, "i8.jsonl")
    import jiwer

    assert jiwer.wer([r for _, r in clips], [words(res[str(p)].text) for p, _ in clips]) < 0.1


def test_item_offsets_cut_a_span_of_a_file(whisper_base, testdata, tmp_path):
    clip = librivox(testdata, 1)[0][0]
    item = Item(id="span", path=str(clip), offset_s=1.0, duration_s=2.0)
    _, res = run([item], whisper_base, tmp_path, "span.jsonl")
    assert res["span"].duration_s == pytest.approx(2.0, abs=0.05)
    assert np.isfinite(res["span"].duration_s)


def test_local_whisper_dir_is_identified_by_content_hash(tmp_path):
    from speechkit.models.builtins import ensure_whisper
    from speechkit.models.registry import RuntimeOptions, load_model

    cached = ensure_whisper("whisper-base")
    copy = tmp_path / "my-whisper"
    shutil.copytree(cached, copy)
    a = load_model(str(cached), RuntimeOptions(device="cpu")).describe()
    b = load_model(str(copy), RuntimeOptions(device="cpu")).describe()
    assert len(a["sha256"]) == 64 and a["sha256"] == b["sha256"] and b["source"] == str(copy)
    from speechkit.models.identity import model_card

    assert model_card(str(copy)).identity["sha256"] == b["sha256"]  # known before loading

"""`speechkit bench` end to end with the real default model on real recordings."""

import json
import shutil
import subprocess
import sys
import wave

import pytest
from typer.testing import CliRunner

from speechkit.data import read_results
from speechkit.errors import SpeechkitError
from speechkit.evaluation.bench import run_bench

# Whisper base (greedy, whisper-en normalizer) measured 6.59% WER / 2.75% CER on
# librivox-mini; the bound leaves room for numeric drift across CPUs, not for a broken run.
LIBRIVOX_MINI_WER_BOUND = 10.0


def seconds(path):
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def cli(*args):
    from speechkit.cli import _register_subcommands, app

    _register_subcommands()
    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_bench_librivox_mini_with_the_default_model(testdata, tmp_path):
    out = tmp_path / "run"
    res = cli("bench", "librivox-mini", "--data-root", str(testdata), "--out-dir", str(out),
              "--no-progress")
    assert res.exit_code == 0, res.output
    scores = json.loads((out / "scores.json").read_text())
    assert scores["counts"]["scored"] == 10 and scores["complete"]
    assert scores["metrics"]["wer"] < LIBRIVOX_MINI_WER_BOUND
    assert 0 < scores["metrics"]["cer"] < scores["metrics"]["wer"]
    run = scores["run"]
    assert run["model"]["name"] == "whisper-base" and len(run["model"]["sha256"]) == 64
    assert run["decode"]["task"] == "transcribe" and run["decode"]["language"] == "en"
    assert run["normalizer"] == "whisper-en" and run["speechkit_version"] and run["date"]
    assert run["speed"]["rtfx"] > 0 and run["speed"]["peak_rss_mb"] > 0
    md = (out / "results.md").read_text()
    assert "| whisper-base | test | wer |" in md and "rtfx" in md
    assert (out / "results.csv").read_text().startswith("system,split,modality,metric")
    # The committed nightly baseline was made with this command: a fresh run must pass the gate.
    gate = cli("compare", "benchmarks/baselines/librivox-mini.json", str(out / "scores.json"),
               "--max-regression", "wer=1.0", "--max-regression", "cer=1.0")
    assert gate.exit_code == 0, gate.output


@pytest.mark.slow
def test_shards_merge_into_the_unsharded_run(whisper_base, testdata, tmp_path):
    kw = dict(data_root=testdata, limit=4, progress=False)
    whole = run_bench("librivox-mini", whisper_base, out_dir=tmp_path / "whole", **kw).summary
    for k in range(2):
        part = run_bench("librivox-mini", whisper_base, out_dir=tmp_path / "sharded",
                         shard=f"{k}/2", **kw).summary
        assert part["counts"]["scored"] == 2
    merged = run_bench("librivox-mini", whisper_base, out_dir=tmp_path / "sharded", **kw).summary
    assert merged["counts"]["scored"] == 4 and merged["metrics"] == whole["metrics"]
    assert merged["run"]["speed"]["from_shards"] == 2  # nothing was decoded again
    a = read_results(tmp_path / "whole" / "predictions.jsonl")
    b = read_results(tmp_path / "sharded" / "predictions.jsonl")
    assert {k: v.text for k, v in a.items()} == {k: v.text for k, v in b.items()}


@pytest.mark.slow
def test_half_filled_data_root_is_counted_not_hidden(whisper_base, testdata, tmp_path):
    root = tmp_path / "ps"
    shutil.copytree(testdata / "librivox", root / "librivox")
    shutil.copytree(testdata / "cards", root / "cards")
    gone = sorted((root / "librivox").glob("*.wav"))[0]
    gone.unlink()
    summary = run_bench("librivox-mini", whisper_base, data_root=root, out_dir=tmp_path / "o",
                        progress=False).summary
    assert summary["counts"]["scored"] == 9 and summary["counts"]["protocol_items"] == 10
    assert summary["counts"]["missing_media"] == 1 and not summary["complete"]
    assert any(gone.name in w for w in summary["warnings"])
    assert "| 9/10 |" in (tmp_path / "o" / "results.md").read_text()


@pytest.mark.slow
def test_lrs3_layout_runs_the_audio_track_beside_published_rows(whisper_base, testdata,
                                                                 make_media, tmp_path):
    clip = sorted((testdata / "librivox").glob("*.wav"))[1]  # "he was not an ill-disposed ..."
    spk = tmp_path / "lrs3" / "test" / "spk01"
    spk.mkdir(parents=True)
    video = make_media("lrs3.mp4", "-f", "lavfi", "-i", "testsrc=size=96x96:rate=25",
                       "-i", str(clip), "-shortest", "-c:v", "libx264", "-c:a", "aac")
    shutil.copy(video, spk / "00001.mp4")
    (spk / "00001.txt").write_text("Text:  HE WAS NOT AN ILL DISPOSED YOUNG MAN\nConf:  4\n")
    summary = run_bench("lrs3", whisper_base, data_root=tmp_path / "lrs3",
                        out_dir=tmp_path / "o", progress=False).summary
    assert summary["run"]["modality"] == "audio" and summary["run"]["task"] == "asr"
    # The LRS3 protocol lowercases only: Whisper's punctuation counts against it.
    assert summary["counts"]["scored"] == 1 and summary["normalizer"] == "lrs3"
    assert summary["metrics"]["wer"] == pytest.approx(300 / 8)  # "ill-disposed" "man."
    assert not summary["complete"]  # 1 of the protocol's 1,321 utterances
    assert any("1321" in w for w in summary["warnings"])
    md = (tmp_path / "o" / "results.md").read_text()
    assert "auto_avsr" in md and "Llama-AVSR" in md and "video" not in md.split("\n")[2]
    basic = run_bench("lrs3", whisper_base, data_root=tmp_path / "lrs3", normalizer="basic",
                      out_dir=tmp_path / "o", progress=False).summary
    assert basic["metrics"]["wer"] == 0 and basic["normalizer"] == "basic"
    with pytest.raises(SpeechkitError, match="cannot read the video track"):
        run_bench("lrs3", whisper_base, data_root=tmp_path / "lrs3", modality="video",
                  out_dir=tmp_path / "v", progress=False)


@pytest.mark.slow
def test_whisper_refuses_tasks_it_cannot_do(whisper_base, tmp_path):
    (tmp_path / "Session5" / "dialog" / "EmoEvaluation").mkdir(parents=True)
    with pytest.raises(SpeechkitError, match="cannot do er"):
        run_bench("iemocap", whisper_base, data_root=tmp_path, progress=False)


def test_missing_data_root_is_one_clear_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "speechkit", "bench", "librispeech", "--data-root",
                          str(tmp_path / "nope"), "--no-progress"], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert "does not exist" in res.stderr and "Expected layout" in res.stderr
    assert lines[0].startswith("error:") and "Traceback" not in res.stderr


def test_unknown_suite_and_bad_shard_are_usage_errors(tmp_path):
    with pytest.raises(SpeechkitError, match="suite"):
        run_bench("no-such-suite", "whisper-base", progress=False)
    from speechkit.evaluation.suites import parse_shard

    with pytest.raises(SpeechkitError, match="K/N"):
        parse_shard("3/2")


@pytest.mark.slow
def test_bench_runs_a_plain_manifest_and_counts_every_line(whisper_base, testdata, tmp_path):
    clips = sorted((testdata / "librivox").glob("*.wav"))[:2]
    refs = {ln.split("(")[-1].rstrip(")"): ln.split("</s>")[0].replace("<s>", "").strip()
            for ln in (testdata / "librivox" / "transcription").read_text().splitlines()}
    lines = [json.dumps({"audio_filepath": str(c), "text": refs[c.stem], "duration": seconds(c)})
             for c in clips]  # NeMo style: the clip's duration, which is honoured
    manifest = tmp_path / "mine.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpeechkitError, match="--task"):
        run_bench(manifest, whisper_base, progress=False, out_dir=tmp_path / "x")
    summary = run_bench(manifest, whisper_base, task="asr", progress=False, out_dir=tmp_path / "o").summary
    assert summary["counts"]["scored"] == 2 and summary["metrics"]["wer"] < 15
    assert summary["complete"]
    # An unusable line is an item that failed, never one that was not there.
    manifest.write_text("\n".join([*lines, "{not json"]) + "\n")
    summary = run_bench(manifest, whisper_base, task="asr", progress=False, out_dir=tmp_path / "o").summary
    assert (summary["counts"]["expected"], summary["counts"]["errored"]) == (3, 1)
    assert summary["incomplete"] == ["scored 2 of 3 items (1 failed in the run)"]
    assert not summary["complete"] and summary["problems"]["errored"][0]["id"] == "mine.jsonl:3"
    manifest.write_text("\n".join([*lines, "{not json", '{"path": "gone.wav", "reference": "x"}'])
                        + "\n")
    summary = run_bench(manifest, whisper_base, task="asr", progress=False, out_dir=tmp_path / "o").summary
    assert summary["counts"]["missing_media"] == 1 and not summary["complete"]
    assert summary["incomplete"][0] == "1 item(s) have no media file under the data root"
    md = (tmp_path / "o" / "results.md").read_text()
    assert "| wer |" in md and "| cer |" in md
    # A selection with nothing in it scores nothing: not a complete run.
    empty = run_bench(manifest, whisper_base, task="asr", limit=1, shard="1/2", progress=False,
                      out_dir=tmp_path / "o").summary
    assert not empty["complete"] and empty["incomplete"][-1].startswith("nothing to score")

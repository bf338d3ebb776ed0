"""Every writer of a results file takes its lock: `merge` never rewrites a file a transcribe is
appending to, never reads a shard another run is still writing, refuses shards of different
models or settings (as resume does), and an empty --shard is an error."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechkit.data import Result, dumps_line
from speechkit.errors import SpeechkitError
from speechkit.merge import merge_results
from speechkit.results import ResultWriter
from tests.test_cli import cli_env, librivox_clips, speechkit

MODEL = {"name": "whisper-tiny.en", "source": "builtin:whisper-tiny.en", "sha256": "a" * 64,
         "engine": "ctranslate2", "quant": "int8"}
DECODE = {"task": "transcribe", "language": None, "beam_size": 1}


def _ok(i: str, model: dict | None = None, decode: dict | None = None) -> Result:
    return Result(id=i, path=f"{i}.wav", text=f"text {i}", model=model or MODEL, decode=decode or DECODE)


def _shard(path: Path, *results: Result) -> Path:
    path.write_text("".join(dumps_line(r.to_dict()) for r in results), encoding="utf-8")
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_merge_into_the_file_a_transcribe_writes_is_refused_and_loses_nothing(testdata, tmp_path):
    clips = []  # enough files, one at a time, that the run is still writing when merge starts
    for k in range(8):
        for clip in librivox_clips(testdata):
            clips.append(tmp_path / f"{k}_{clip.name}")
            clips[-1].symlink_to(clip)
    live = tmp_path / "live.jsonl"
    run = subprocess.Popen([sys.executable, "-m", "speechkit", "transcribe", *map(str, clips),
                            "--model", "whisper-tiny.en", "--device", "cpu", "--out", str(live),
                            "--batch-size", "1", "--threads", "1"],
                           env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None and not (
                live.exists() and live.read_text(encoding="utf-8").count("\n") >= 1):
            time.sleep(0.02)
        assert run.poll() is None, "the transcribe finished before the merge could race it"
        merged = speechkit("merge", live, live, timeout=60)
        assert merged.returncode != 0
        assert "another speechkit run is writing" in merged.stderr, merged.stderr
    finally:
        said, _ = run.communicate(timeout=300)
    assert run.returncode == 0, said
    assert sorted(r["id"] for r in _lines(live)) == sorted(map(str, clips))
    assert all(r["status"] == "ok" for r in _lines(live))


def test_a_shard_another_run_still_writes_is_not_read(tmp_path):
    done = _shard(tmp_path / "a.jsonl", _ok("1"))
    with ResultWriter(tmp_path / "b.jsonl") as writer:
        writer.write(_ok("2"))
        with pytest.raises(SpeechkitError, match="another speechkit run is writing .*b.jsonl"):
            merge_results(tmp_path / "all.jsonl", [done, tmp_path / "b.jsonl"])
    assert not (tmp_path / "all.jsonl").exists() or not (tmp_path / "all.jsonl").read_text()
    report = merge_results(tmp_path / "all.jsonl", [done, tmp_path / "b.jsonl"])
    assert report.written == 2


def test_a_transcribe_cannot_start_on_a_file_merge_holds(tmp_path):
    from speechkit.results import locked

    out = tmp_path / "all.jsonl"
    with locked(out), pytest.raises(SpeechkitError, match="another speechkit run is writing"):
        ResultWriter(out)
    ResultWriter(out).close()  # released when the merge ends


@pytest.mark.parametrize(("other", "named"), [
    ({**MODEL, "name": "whisper-base", "source": "builtin:whisper-base", "sha256": "b" * 64},
     "whisper-base"),
    ({**MODEL, "engine": "torch", "quant": None}, "torch"),
])
def test_shards_of_different_models_are_refused(tmp_path, other, named):
    a = _shard(tmp_path / "a.jsonl", _ok("1"))
    b = _shard(tmp_path / "b.jsonl", _ok("2", model=other))
    with pytest.raises(SpeechkitError, match=f"b.jsonl \\(2\\) was made by .*{named}.*one model"):
        merge_results(tmp_path / "all.jsonl", [a, b])
    assert not (tmp_path / "all.jsonl").exists()


@pytest.mark.parametrize("change", [{"beam_size": 5}, {"task": "translate"}, {"language": "de"}])
def test_shards_of_different_decode_settings_are_refused(tmp_path, change):
    a = _shard(tmp_path / "a.jsonl", _ok("1"))
    b = _shard(tmp_path / "b.jsonl", _ok("2", decode={**DECODE, **change}))
    (key, value), = change.items()
    with pytest.raises(SpeechkitError, match=f"decoded with {key} {value!r}"):
        merge_results(tmp_path / "all.jsonl", [a, b])


def test_error_lines_of_another_model_do_not_block_a_merge(tmp_path):
    other = {**MODEL, "sha256": "c" * 64}
    failed = Result(id="2", path="2.wav", status="error", error="2.wav: could not decode", model=other)
    a = _shard(tmp_path / "a.jsonl", _ok("1"))
    b = _shard(tmp_path / "b.jsonl", failed)
    assert merge_results(tmp_path / "all.jsonl", [a, b]).failed == ["2"]


def test_a_torn_shard_says_to_rerun_that_shard(tmp_path):
    a = _shard(tmp_path / "a.jsonl", _ok("1"), _ok("2"))
    with open(a, "a", encoding="utf-8") as fh:
        fh.write(dumps_line(_ok("3").to_dict())[:40])
    with pytest.raises(SpeechkitError, match=r"a.jsonl:3 is a torn last line.*run that shard again"):
        merge_results(tmp_path / "all.jsonl", [a])


def test_merge_command_refuses_mixed_models_in_one_line(tmp_path):
    other = {**MODEL, "name": "whisper-base", "sha256": "b" * 64}
    a = _shard(tmp_path / "a.jsonl", _ok("1"))
    b = _shard(tmp_path / "b.jsonl", _ok("2", model=other))
    res = speechkit("merge", tmp_path / "all.jsonl", a, b, timeout=60)
    assert res.returncode != 0
    assert [x for x in res.stderr.splitlines() if x.strip()] == [res.stderr.strip()], res.stderr
    assert "one model and settings" in res.stderr


@pytest.mark.parametrize("shard", ["", " "])
def test_an_empty_shard_is_an_error(testdata, tmp_path, shard):
    clip = librivox_clips(testdata)[0]
    res = speechkit("transcribe", clip, "--shard", shard, "--out", tmp_path / "out.jsonl", timeout=60)
    assert res.returncode != 0
    assert "--shard is empty" in res.stderr, res.stderr
    assert not (tmp_path / "out.jsonl").exists()

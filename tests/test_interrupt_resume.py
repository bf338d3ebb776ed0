"""An interrupted many-file run keeps every finished file and every finished piece of a long
file; the rerun decodes only what is left and writes what an uninterrupted run writes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from speechkit.journal import journal_path
from speechkit.media.ffmpeg import decode_audio
from speechkit.media.wav import write_wav

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
PAUSE_S = 0.8  # silence between joined clips: where the voice activity detector cuts


def _librivox(testdata: Path) -> list[Path]:
    lines = (testdata / "librivox" / "transcription").read_text().splitlines()
    return [testdata / "librivox" / f"{re.search(r'[(](.*)[)]', x).group(1)}.wav" for x in lines[:5]]


@pytest.fixture(scope="module")
def inputs(testdata, tmp_path_factory) -> list[str]:
    """Two long recordings (the LibriVox clips joined with pauses, 6 and 2 times over: about
    220 s and 75 s, cut into several pieces) and three short clips."""
    root = tmp_path_factory.mktemp("interrupt")
    clips = [decode_audio(p) for p in _librivox(testdata)]
    gap = np.zeros(int(PAUSE_S * 16000), dtype=np.float32)
    longs = []
    for times, name in ((6, "long_a.wav"), (2, "long_b.wav")):
        pcm = np.concatenate([x for _ in range(times) for c in clips for x in (c, gap)])
        longs.append(str(write_wav(root / name, pcm)))
    return [longs[0], *map(str, _librivox(testdata)[:3]), longs[1]]


def _run(args: list[str], out: Path, **kw) -> subprocess.Popen:
    # SIGINT restored to its default: a shell that starts pytest in the background (nohup, &)
    # ignores it, the child inherits that, and speechkit leaves an ignored Ctrl-C ignored.
    return subprocess.Popen([sys.executable, "-m", "speechkit", "transcribe", *args, "--out", str(out),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _essence(r: dict) -> tuple:
    return (r["status"], r["language"], r["text"],
            [(s["start"], s["end"], s["text"]) for s in r["segments"]])


@pytest.fixture(scope="module")
def uninterrupted(inputs, tmp_path_factory) -> dict[str, tuple]:
    out = tmp_path_factory.mktemp("whole") / "r.jsonl"
    proc = _run(inputs, out)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert not journal_path(out).exists()  # a finished run leaves no pieces behind
    return {r["id"]: _essence(r) for r in _lines(out)}


def _journaled(pieces: Path, item_id: str) -> bool:
    """Whether the journal holds a finished piece of `item_id` (a file of many pieces: the
    rest of it is still to do when the signal comes)."""
    try:
        return f'"id": {json.dumps(item_id)}' in pieces.read_text()
    except OSError:
        return False


def _interrupt_when_pieces_exist(inputs, out: Path, sig: int) -> list[dict]:
    """Start a run, send `sig` once a long file has finished pieces on disk; the lines kept."""
    proc = _run(inputs, out)
    pieces = journal_path(out)
    deadline = time.monotonic() + 300
    while not _journaled(pieces, inputs[0]) and proc.poll() is None:  # the longest file's
        assert time.monotonic() < deadline, "no piece was journaled in 300 s"
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    return _lines(out)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_rerun_after_an_interruption_equals_an_uninterrupted_run(inputs, uninterrupted, tmp_path, sig):
    out = tmp_path / "r.jsonl"
    kept = _interrupt_when_pieces_exist(inputs, out, sig)
    pieces = journal_path(out)
    assert pieces.exists() and pieces.read_text().strip(), "the finished pieces were lost"
    journaled = {json.loads(x)["id"] for x in pieces.read_text().splitlines() if x.strip()}
    assert journaled and journaled <= set(inputs)  # ids are the paths given

    proc = _run(inputs, out)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    final = _lines(out)
    ids = [r["id"] for r in final]
    assert len(ids) == len(set(ids)) == len(inputs)  # no id twice, none lost
    assert {r["id"]: _essence(r) for r in final} == uninterrupted
    for r in kept:  # what had finished before the interruption is kept as it was
        assert _essence(next(f for f in final if f["id"] == r["id"])) == _essence(r)
    resumed = [r for r in final if r["extras"].get("resumed_pieces")]
    assert resumed and {r["id"] for r in resumed} <= journaled
    assert not pieces.exists()  # every piece now belongs to a written line


def test_pieces_of_another_model_or_settings_are_not_taken_back(tmp_path):
    """A piece is reused only for the same input, model and decode settings, at the same cut."""
    from speechkit.data import Item, Segment
    from speechkit.journal import PieceJournal, piece_key
    from speechkit.models.base import Hypothesis

    results = tmp_path / "r.jsonl"
    item = Item(id="a", path="/x/a.wav")
    key = piece_key(item, {"name": "whisper-base", "sha256": "1"}, {"beam_size": 1})
    hyp = Hypothesis(text="hello there", language="en",
                     segments=[Segment(0.0, 1.5, "hello there")], extras={"avg_logprob": -0.2})
    j = PieceJournal(results)
    j.add("a", key, (0.0, 1.5), hyp, "en")
    j.sync()
    j.close(finished=set())

    again = PieceJournal(results)
    found, detected = again.restore("a", key, [(0.0, 1.5), (1.5, 3.0)])
    assert found == {0: hyp} and detected == "en"
    for other in (piece_key(item, {"name": "whisper-base", "sha256": "2"}, {"beam_size": 1}),
                  piece_key(item, {"name": "whisper-base", "sha256": "1"}, {"beam_size": 5}),
                  piece_key(Item(id="a", path="/x/a.wav", offset_s=1.0),
                            {"name": "whisper-base", "sha256": "1"}, {"beam_size": 1})):
        assert again.restore("a", other, [(0.0, 1.5)]) == ({}, None)
    assert again.restore("a", key, [(0.0, 1.6)]) == ({}, None)  # another cut
    again.close(finished={"a"})  # its line is written: the journal is removed
    assert not journal_path(results).exists()


def test_a_torn_journal_line_is_ignored(tmp_path):
    from speechkit.data import Item
    from speechkit.journal import PieceJournal, piece_key
    from speechkit.models.base import Hypothesis

    results = tmp_path / "r.jsonl"
    key = piece_key(Item(id="a", path="a.wav"), None, None)
    j = PieceJournal(results)
    j.add("a", key, (0.0, 1.0), Hypothesis(text="one"), None)
    j.sync()
    j.close(finished=set())
    with open(journal_path(results), "ab") as fh:
        fh.write(b'{"id": "a", "key": "' + key.encode() + b'", "span": [1.0, 2.0], "hyp": {"te')
    found, _ = PieceJournal(results).restore("a", key, [(0.0, 1.0), (1.0, 2.0)])
    assert [h.text for h in found.values()] == ["one"]
    j = PieceJournal(results)  # the next line lands on a line of its own
    j.add("a", key, (1.0, 2.0), Hypothesis(text="two"), None)
    j.close(finished=set())
    found, _ = PieceJournal(results).restore("a", key, [(0.0, 1.0), (1.0, 2.0)])
    assert [h.text for h in found.values()] == ["one", "two"]


def test_a_damaged_journal_line_of_any_kind_is_decoded_again(tmp_path):
    from speechkit.data import Item
    from speechkit.journal import PieceJournal, piece_key
    from speechkit.models.base import Hypothesis

    results = tmp_path / "r.jsonl"
    key = piece_key(Item(id="a", path="a.wav"), None, None)
    j = PieceJournal(results)
    j.add("a", key, (0.0, 1.0), Hypothesis(text="one"), None)
    j.close(finished=set())
    with open(journal_path(results), "ab") as fh:  # nesting past any parser, bytes, a list
        fh.write(b"[" * 100000 + b"\n" + b"\xff\xfe\n" + b'["a"]\n')
    found, _ = PieceJournal(results).restore("a", key, [(0.0, 1.0)])
    assert [h.text for h in found.values()] == ["one"]

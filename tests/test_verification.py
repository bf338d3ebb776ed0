"""Speaker verification: real Resemblyzer embeddings on real recordings, and speech-LLM
trials (two recordings in one input) through `speechkit bench`."""

import itertools
import json
import os

import numpy as np
import pytest

from speechkit.data import read_results
from speechkit.errors import SpeechkitError
from speechkit.evaluation.bench import run_bench
from speechkit.models.speechllm.model import PAIR_GAP_S, pair_audio


def voxceleb_layout(root, testdata, corrupt=False):
    """A VoxCeleb1-style tree from pocketsphinx-testdata: the LibriVox reader is one speaker,
    the card names another. Trials: every same-speaker pair (1) and every cross pair (0)."""
    speakers = {"reader": sorted((testdata / "librivox").glob("*.wav")),
                "cards": sorted((testdata / "cards").glob("*.wav"))}
    rel = {}
    for spk, files in speakers.items():
        (root / "wav" / spk / "v1").mkdir(parents=True)
        for f in files:
            os.symlink(f, root / "wav" / spk / "v1" / f.name)
            rel[f] = f"{spk}/v1/{f.name}"
    if corrupt:
        (root / "wav" / "cards" / "v1" / "bad.wav").write_bytes(b"RIFF\x00\x00garbage")
    lines = []
    for files in speakers.values():
        lines += [f"1 {rel[a]} {rel[b]}" for a, b in itertools.combinations(files, 2)]
    lines += [f"0 {rel[a]} {rel[b]}" for a in speakers["reader"] for b in speakers["cards"]]
    if corrupt:
        lines.append(f"1 cards/v1/bad.wav {rel[speakers['cards'][0]]}")
    (root / "veri_test2.txt").write_text("\n".join(lines) + "\n")
    return len(lines)


@pytest.mark.slow
def test_resemblyzer_separates_real_speakers(testdata, tmp_path, monkeypatch):
    monkeypatch.setattr("speechkit.runtime.WINDOW_BATCHES", 1)  # many small windows
    n = voxceleb_layout(tmp_path / "vox", testdata, corrupt=True)
    summary = run_bench("voxceleb1-o", "resemblyzer", data_root=tmp_path / "vox",
                        out_dir=tmp_path / "o", progress=False, batch_size=3).summary
    counts = summary["counts"]
    assert counts["scored"] == n - 1 and counts["errored"] == 1  # the corrupt file's trial
    assert summary["metrics"]["eer"] < 10.0 and summary["metrics"]["mindcf_0.05"] < 0.5
    results = read_results(tmp_path / "o" / "predictions.jsonl")
    bad = [r for r in results.values() if r.status == "error"]
    assert len(bad) == 1 and "bad.wav" in bad[0].error
    same = [r.extras["score"] for r in results.values() if r.reference == "yes" and r.status == "ok"]
    diff = [r.extras["score"] for r in results.values() if r.reference == "no"]
    assert np.median(same) > 0.75 > np.median(diff)
    run = summary["run"]
    assert run["model"]["name"] == "resemblyzer" and len(run["model"]["sha256"]) == 64
    assert "veri_test2" in json.dumps(summary["run"]["build"]) or summary["warnings"]
    # A rerun resumes: nothing is embedded again, the scores stay.
    again = run_bench("voxceleb1-o", "resemblyzer", data_root=tmp_path / "vox",
                      out_dir=tmp_path / "o", progress=False).summary
    assert again["metrics"] == summary["metrics"]


@pytest.mark.slow
def test_resemblyzer_refuses_transcription(testdata, tmp_path):
    with pytest.raises(SpeechkitError, match="speaker-embedding model"):
        run_bench("librivox-mini", "resemblyzer", data_root=testdata, progress=False,
                  out_dir=tmp_path)


def test_pair_audio_joins_enrollment_and_test_within_the_window():
    a, b = np.ones(16000 * 20, np.float32), -np.ones(16000 * 3, np.float32)
    joined = pair_audio(a, b, max_s=30.0)
    assert len(joined) / 16000 == pytest.approx(14.5 + PAIR_GAP_S + 3.0)
    assert joined[0] == 1 and joined[-1] == -1 and joined[int(14.7 * 16000)] == 0


def test_speech_llm_scores_trials_with_p_yes(testdata, tmp_path):
    from speechkit.models.speechllm import load_speechllm
    from speechkit.models.speechllm.create import new_checkpoint
    from tests.test_speechllm_tiny import tiny_llm, tiny_whisper

    ck = tmp_path / "ck"
    new_checkpoint(ck, audio_encoder=str(tiny_whisper(tmp_path / "w")),
                   llm=str(tiny_llm(tmp_path / "l")), bridge="linear", rate=4,
                   template="salmonn")
    model = load_speechllm(str(ck), device="cpu")
    voxceleb_layout(tmp_path / "vox", testdata)
    summary = run_bench("voxceleb1-o", model, data_root=tmp_path / "vox", shard="0/8",
                        out_dir=tmp_path / "o", progress=False,
                        decode=__import__("speechkit.models.base", fromlist=["x"]).DecodeOptions(
                            max_new_tokens=2)).summary
    assert summary["counts"]["scored"] == 6 and summary["run"]["task"] == "sv"
    results = read_results(tmp_path / "o" / "predictions.jsonl")
    for r in results.values():
        assert 0.0 <= r.extras["p_yes"] <= 1.0 and r.task == "sv"
        enroll, test = (tmp_path / "vox" / "wav" / p for p in r.id.split("|"))
        assert r.duration_s > 0
    assert "eer" in summary["metrics"]  # from P(yes): meaningless for random weights, but real

"""transformers audio-text-to-text models through the commands users run: `transcribe` for
every task, `bench` on librivox-mini into one table with a Whisper and a checkpoint row,
resume refusing another model's settings, and `speechkit models` listing the families."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from speechkit.evaluation.report import markdown_table, table_rows
from speechkit.models.base import DecodeOptions
from tests.hf_audio_parts import tiny_audioflamingo3, tiny_qwen2_audio, tiny_voxtral
from tests.test_speechllm_tiny import noise

runner = CliRunner()


def speechkit(*args):
    from speechkit.cli import _register_subcommands, app

    _register_subcommands()
    return runner.invoke(app, [str(a) for a in args])


BUILDERS = {"qwen2_audio": tiny_qwen2_audio, "voxtral": tiny_voxtral,
            "audioflamingo3": tiny_audioflamingo3}
NEEDS = {"voxtral": "mistral_common"}  # Voxtral's processor: speechkit[voxtral], in the test extra


@pytest.fixture(scope="module")
def qwen2_audio_dir(tmp_path_factory):
    return tiny_qwen2_audio(tmp_path_factory.mktemp("qwen2_audio") / "model")


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family_dir(request, tmp_path_factory, qwen2_audio_dir):
    if request.param == "qwen2_audio":
        return request.param, qwen2_audio_dir
    if request.param in NEEDS and importlib.util.find_spec(NEEDS[request.param]) is None:
        pytest.skip(f"{request.param} needs {NEEDS[request.param]}: pip install -e '.[test]'")
    return request.param, BUILDERS[request.param](tmp_path_factory.mktemp(request.param) / "model")


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    import soundfile as sf

    root = tmp_path_factory.mktemp("wavs")
    paths = []
    for i, seconds in enumerate((1.5, 4.0)):
        paths.append(root / f"clip{i}.wav")
        sf.write(paths[-1], noise(seconds, i), 16000)
    return paths


@pytest.mark.parametrize("task,extra", [("asr", []), ("st", ["--target-language", "de"]),
                                        ("er", []), ("aac", []),
                                        ("sqa", ["--prompt", "What do you hear? A or B?"])])
def test_every_task_runs_through_transcribe(family_dir, wavs, tmp_path, task, extra):
    out = tmp_path / "out.jsonl"
    res = speechkit("transcribe", *wavs, "--model", family_dir[1], "--task", task, *extra,
                    "--max-new-tokens", "4", "--out", out)
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["status"] for x in lines] == ["ok", "ok"] and all(x["text"] for x in lines)
    model = lines[0]["model"]
    assert model["type"] == "hf-audio" and model["family"] == family_dir[0]
    assert model["quant"] == "fp32" and len(model["sha256"]) == 64


def test_resume_refuses_results_of_other_settings(qwen2_audio_dir, wavs, tmp_path):
    out = tmp_path / "out.jsonl"
    first = speechkit("transcribe", wavs[0], "--model", qwen2_audio_dir, "--task", "asr",
                      "--max-new-tokens", "3", "--out", out)
    assert first.exit_code == 0, first.output
    again = speechkit("transcribe", wavs[0], "--model", qwen2_audio_dir, "--task", "asr",
                      "--quant", "4bit", "--max-new-tokens", "3", "--out", out)
    message = str(again.exception)
    assert again.exit_code != 0 and "quant fp32" in message and "quant 4bit" in message


def test_models_lists_the_audio_llm_families():
    res = speechkit("models")
    assert res.exit_code == 0, res.output
    for family in ("qwen2_audio", "Qwen2-Audio", "voxtral", "Voxtral", "audioflamingo3"):
        assert family in res.output


@pytest.mark.slow
def test_bench_puts_audio_llm_whisper_and_checkpoint_in_one_table(family_dir, testdata, tmp_path):
    from speechkit.evaluation.bench import run_bench
    from speechkit.models.speechllm import new_checkpoint
    from tests.test_speechllm_tiny import tiny_llm, tiny_whisper

    out = tmp_path / "hf"
    res = speechkit("bench", "librivox-mini", "--model", family_dir[1], "--data-root", testdata,
                    "--limit", "3", "--max-new-tokens", "6", "--out-dir", out, "--no-progress")
    assert res.exit_code == 0, res.output
    scores = json.loads((out / "scores.json").read_text())
    assert scores["counts"]["scored"] == 3 and scores["metrics"]["wer"] >= 0
    assert scores["run"]["model"]["family"] == family_dir[0]
    assert "| wer |" in (out / "results.md").read_text()
    ck = tmp_path / "ck"
    new_checkpoint(ck, audio_encoder=str(tiny_whisper(tmp_path / "w")),
                   llm=str(tiny_llm(tmp_path / "llm")), bridge="linear", rate=4, hidden_dim=48)
    rows = table_rows(scores, system=f"{family_dir[0]} (tiny)", metrics=["wer"])
    for system, model in (("whisper-tiny.en", "whisper-tiny.en"), ("speechkit checkpoint", ck)):
        run = run_bench("librivox-mini", str(model), data_root=testdata, limit=3, progress=False,
                        out_dir=tmp_path / system.replace(" ", "-"),
                        decode=DecodeOptions(max_new_tokens=6))
        rows += table_rows(run.summary, system=system, metrics=["wer"])
    table = markdown_table(rows)
    for system in (f"{family_dir[0]} (tiny)", "whisper-tiny.en", "speechkit checkpoint"):
        assert f"| {system} |" in table


def test_speaker_verification_runs_through_bench_with_p_yes(family_dir, testdata, tmp_path):
    from speechkit.data import read_results
    from tests.test_verification import voxceleb_layout

    voxceleb_layout(tmp_path / "vox", testdata)
    out = tmp_path / "sv"
    res = speechkit("bench", "voxceleb1-o", "--model", family_dir[1], "--data-root",
                    tmp_path / "vox", "--shard", "0/8", "--max-new-tokens", "2", "--out-dir", out,
                    "--no-progress")
    scores = json.loads((out / "scores.shard-0-of-8.json").read_text())
    assert res.exit_code == 1 and not scores["complete"]  # 45 trials of the 37611 the protocol has
    assert scores["counts"]["scored"] == 6 and scores["counts"]["errored"] == 0
    assert scores["run"]["task"] == "sv" and "| eer |" in (out / "results.shard-0-of-8.md").read_text()
    results = read_results(out / "predictions.shard-0-of-8.jsonl")
    assert all(0.0 <= r.extras["p_yes"] <= 1.0 for r in results.values())


def test_a_long_file_is_cut_at_silences_into_the_models_windows(qwen2_audio_dir, testdata,
                                                                 tmp_path):
    import numpy as np
    import soundfile as sf

    from speechkit.media.ffmpeg import decode_audio

    speech = [decode_audio(f) for f in sorted((testdata / "librivox").glob("*.wav"))]
    long = np.concatenate(speech * 2)  # about two minutes of read speech
    sf.write(tmp_path / "long.wav", long, 16000)
    out = tmp_path / "out.jsonl"
    res = speechkit("transcribe", tmp_path / "long.wav", "--model", qwen2_audio_dir, "--task",
                    "asr", "--max-new-tokens", "3", "--out", out)
    assert res.exit_code == 0, res.output
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    spans = [s["end"] - s["start"] for s in line["segments"]]
    assert len(spans) >= len(long) / 16000 / 30 and max(spans) <= 30.0

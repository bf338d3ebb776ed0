"""The one runner: items checked against the model's streams and tasks before decoding, the
settings actually used recorded, options a model ignores reported."""

import json
import subprocess
import sys

import pytest

from speechkit.data import Item, read_results
from speechkit.errors import SpeechkitError
from speechkit.evaluation.bench import run_bench
from speechkit.models.base import AUDIO, VIDEO, DecodeOptions, Hypothesis, SpeechModel
from speechkit.models.registry import RuntimeOptions
from speechkit.settings import unused_option_warnings
from speechkit.transcribe import transcribe_items
from tests.test_cli import cli_env, librivox_clips
from tests.test_verification import voxceleb_layout


class LipReader(SpeechModel):
    """A visual speech recognizer: it reads lip crops, which an audio file does not have."""

    name = "lip-reader"
    kind = "lip-reading"
    modalities = frozenset({AUDIO, VIDEO})
    tasks = frozenset({"vsr", "avsr"})

    def generate(self, batch, options, prompts=None, languages=None) -> list[Hypothesis]:
        raise AssertionError("an item without lip crops reached the model")


def test_a_video_model_gets_one_clear_error_per_audio_only_item(testdata, tmp_path):
    clips = librivox_clips(testdata)[:3]
    items = [Item(id=c.stem, path=str(c)) for c in clips]
    stats = transcribe_items(items, LipReader(), DecodeOptions(task="vsr"), tmp_path / "r.jsonl")
    assert (stats.ok, stats.failed) == (0, 3)
    results = read_results(tmp_path / "r.jsonl")
    assert all("has no video stream (audio only)" in r.error for r in results.values())
    assert all(r.path in r.error and r.task == "vsr" for r in results.values())


def test_a_task_the_model_does_not_take_stops_the_run_before_decoding(testdata, tmp_path):
    # A usage error, not per-item: the task is one for the whole run, so every item would fail.
    items = [Item(id=c.stem, path=str(c)) for c in librivox_clips(testdata)[:2]]
    with pytest.raises(SpeechkitError, match="lip-reader is a lip-reading model: it does --task "
                                             "avsr or vsr, not 'asr'"):
        transcribe_items(items, LipReader(), DecodeOptions(task="asr"), tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists() or not (tmp_path / "r.jsonl").read_text()


@pytest.mark.slow
def test_a_trial_without_its_enrollment_fails_alone(testdata, tmp_path):
    voxceleb_layout(tmp_path / "vox", testdata)
    reader = sorted((tmp_path / "vox" / "wav" / "reader" / "v1").glob("*.wav"))
    manifest = tmp_path / "trials.jsonl"
    lines = [{"id": "pair", "path": str(reader[1]), "reference": "yes", "task": "sv",
              "enroll_path": str(reader[0])},
             {"id": "alone", "path": str(reader[2]), "reference": "yes", "task": "sv"}]
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    summary = run_bench(manifest, "resemblyzer", out_dir=tmp_path / "o", progress=False).summary
    results = read_results(tmp_path / "o" / "predictions.jsonl")
    assert results["pair"].status == "ok" and results["pair"].extras["score"] > 0.5
    assert results["alone"].status == "error"
    assert "needs its enrollment recording" in results["alone"].error
    assert summary["counts"]["errored"] == 1


@pytest.mark.slow
def test_results_record_the_settings_the_model_ran_with(whisper_base, testdata, tmp_path):
    summary = run_bench("librivox-mini", whisper_base, data_root=testdata, limit=2,
                        out_dir=tmp_path / "o", progress=False).summary
    used = {"device": "cpu", "dtype": "int8", "quant": "int8", "engine": "ctranslate2",
            "threads": whisper_base.describe()["threads"], "replicas": whisper_base.describe()["replicas"],
            "batch_size": whisper_base.default_batch, "beam_size": 1}
    assert used["threads"] == used["replicas"] >= 1 and used["batch_size"] == 2 * used["replicas"]
    assert whisper_base.describe()["replicas"] == whisper_base.model.num_workers
    assert summary["run"]["runtime"] == used  # the default batch size resolved, not None
    lines = read_results(tmp_path / "o" / "predictions.jsonl").values()
    assert [r.model["runtime"] for r in lines] == [used, used]
    # Another batch size resumes the finished lines (it does not change the output) ...
    again = run_bench("librivox-mini", whisper_base, data_root=testdata, limit=2,
                      out_dir=tmp_path / "o", progress=False, batch_size=3).summary
    assert again["counts"]["scored"] == 2
    assert again["run"]["runtime"] == used  # ... and keeps the figures of the run that decoded


def test_a_speech_llm_records_its_quantization(testdata, tmp_path):
    from speechkit.models.speechllm import load_speechllm
    from speechkit.models.speechllm.create import new_checkpoint
    from tests.test_speechllm_tiny import tiny_llm, tiny_whisper

    ck = tmp_path / "ck"
    new_checkpoint(ck, audio_encoder=str(tiny_whisper(tmp_path / "w")),
                   llm=str(tiny_llm(tmp_path / "l")), bridge="linear", rate=4)
    model = load_speechllm(str(ck), device="cpu")
    summary = run_bench("librivox-mini", model, data_root=testdata, limit=2, batch_size=2,
                        out_dir=tmp_path / "o", progress=False,
                        decode=DecodeOptions(max_new_tokens=2)).summary
    assert summary["run"]["runtime"] == {"device": "cpu", "dtype": "float32", "quant": "fp32",
                                         "lora_scaling": 4.0,  # alpha 32 / r 8, as trained
                                         "batch_size": 2, "beam_size": model.spec.decode.beam_size}


def test_options_a_model_does_not_use_are_reported():
    runtime = RuntimeOptions(quant="4bit", dtype="float16")
    lines = unused_option_warnings("whisper-base", runtime, DecodeOptions(beam_size=5), None)
    assert lines == ["--quant is ignored by whisper-base: --quant loads speech-LLM weights in "
                     "4/8 bit (Whisper on a CPU: --dtype int8)"]
    lines = unused_option_warnings("resemblyzer", runtime, DecodeOptions(beam_size=5), 4)
    assert [line.split(" is ")[0] for line in lines] == ["--dtype", "--quant", "--beam-size"]


def test_an_unused_option_prints_a_warning_line_before_anything_loads(testdata):
    r = subprocess.run([sys.executable, "-m", "speechkit", "bench", "librivox-mini", "--model",
                        "resemblyzer", "--beam-size", "4"], env=cli_env(), capture_output=True,
                       text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "warning: --beam-size is ignored by resemblyzer: it does not generate text"
    assert r.returncode == 2 and "resemblyzer is a speaker-embedding model: it cannot do asr" in lines[1]



def test_recordings_named_again_are_decoded_once_within_the_budget(testdata):
    from speechkit.media.reuse import DecodedRecordings

    a, b = (str(p) for p in sorted((testdata / "librivox").glob("*.wav"))[:2])
    shared = DecodedRecordings([a, b, a, a])
    lengths = [len(shared.get(p)) for p in (a, b, a, a)]
    assert lengths[0] == lengths[2] == lengths[3] > 0 and lengths[1] > 0
    assert shared.decoded == 2 and shared._kept == {}  # a kept until its last use, then let go
    tight = DecodedRecordings([a, a, a], budget_mb=0)  # nothing fits: decoded each time
    assert [len(tight.get(a)) for _ in range(3)] == [lengths[0]] * 3 and tight.decoded == 3


@pytest.mark.slow
def test_a_verification_run_decodes_each_recording_once(testdata, tmp_path, monkeypatch):
    import speechkit.media.reuse as reuse

    calls = []
    real = reuse.decode_audio
    monkeypatch.setattr(reuse, "decode_audio", lambda path, sr: calls.append(path) or real(path, sr))
    n = voxceleb_layout(tmp_path / "vox", testdata)
    summary = run_bench("voxceleb1-o", "resemblyzer", data_root=tmp_path / "vox",
                        out_dir=tmp_path / "o", progress=False, batch_size=3).summary
    assert summary["counts"]["scored"] == n
    files = list((tmp_path / "vox" / "wav").rglob("*.wav"))
    assert sorted(calls) == sorted(str(f) for f in files)  # every recording once, in 45 trials

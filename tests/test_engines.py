"""Whisper engines on CPU (CTranslate2 and torch) and the math threads they run with."""

import jiwer
import pytest
import torch

from speechkit.data import read_results
from speechkit.errors import SpeechkitError
from speechkit.inputs import expand_inputs
from speechkit.models.base import DecodeOptions
from speechkit.models.registry import RuntimeOptions, load_model, whisper_engine
from speechkit.threads import THREADS_ENV, default_threads, resolve_threads
from speechkit.transcribe import transcribe_items, transcribe_to_jsonl
from tests.test_transcribe import librivox, words

# -- choosing (no model) ----------------------------------------------------------------------


def test_every_core_up_to_eight_is_the_default():
    assert [default_threads(n) for n in (1, 2, 4, 6, 16, 64)] == [1, 2, 4, 6, 8, 8]
    assert resolve_threads(3) == 3  # the option wins


def test_threads_come_from_the_option_then_the_environment(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert resolve_threads(2) == 2 and resolve_threads(None) == 3
    monkeypatch.setenv(THREADS_ENV, "0")
    assert resolve_threads(None) == default_threads()
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(SpeechkitError, match=THREADS_ENV):
        resolve_threads(None)


def test_builtin_whisper_on_cpu_runs_on_ctranslate2_and_elsewhere_on_torch():
    auto = RuntimeOptions()
    assert whisper_engine("whisper-base", auto, "cpu") == "ctranslate2"
    assert whisper_engine("whisper-base", auto, "cuda") == "torch"
    assert whisper_engine("openai/whisper-small", auto, "cpu") == "torch"
    assert whisper_engine("whisper-base", RuntimeOptions(dtype="bfloat16"), "cpu") == "torch"
    assert whisper_engine("whisper-base", RuntimeOptions(engine="torch"), "cpu") == "torch"


def test_ctranslate2_engine_refuses_what_it_cannot_run():
    with pytest.raises(SpeechkitError, match="--engine torch"):
        whisper_engine("openai/whisper-small", RuntimeOptions(engine="ctranslate2"), "cpu")
    with pytest.raises(SpeechkitError, match="--engine torch"):
        whisper_engine("whisper-base", RuntimeOptions(engine="ctranslate2"), "cuda")
    with pytest.raises(SpeechkitError, match="unknown --engine"):
        whisper_engine("whisper-base", RuntimeOptions(engine="onnx"), "cpu")


# -- real weights -----------------------------------------------------------------------------


@pytest.mark.slow
def test_ctranslate2_engine_transcribes_as_well_as_torch(whisper_base, whisper_base_torch, testdata,
                                                          tmp_path):
    clips = librivox(testdata)
    items = expand_inputs([str(p) for p, _ in clips])
    refs = [words(r) for _, r in clips]
    wer = {}
    for name, model in (("ct2", whisper_base), ("torch", whisper_base_torch)):
        transcribe_items(items, model, DecodeOptions(), tmp_path / f"{name}.jsonl")
        res = read_results(tmp_path / f"{name}.jsonl")
        wer[name] = jiwer.wer(refs, [words(res[str(p)].text) for p, _ in clips])
    assert wer["ct2"] < 0.1 and abs(wer["ct2"] - wer["torch"]) <= 0.03, wer
    assert whisper_base.describe()["engine"] == "ctranslate2"
    assert whisper_base_torch.describe()["engine"] == "torch"


@pytest.mark.slow
def test_thread_setting_is_applied_and_recorded(testdata, tmp_path):
    before = torch.get_num_threads()
    try:
        model = load_model("whisper-base", RuntimeOptions(device="cpu", threads=1))
        assert model.model.num_workers == 1 and model.replicas == 1
        clip = librivox(testdata, 1)[0][0]
        transcribe_items(expand_inputs([str(clip)]), model, DecodeOptions(), tmp_path / "r.jsonl")
        r = next(iter(read_results(tmp_path / "r.jsonl").values()))
        assert r.model["threads"] == 1 and r.model["engine"] == "ctranslate2"
        assert r.model["dtype"] == "int8" and r.model["quant"] == "int8"
        assert r.model["runtime"]["replicas"] == 1
        load_model("whisper-base", RuntimeOptions(device="cpu", engine="torch", threads=1))
        assert torch.get_num_threads() == 1  # the torch engine's math threads
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_resume_refuses_results_of_another_engine(whisper_base, testdata, tmp_path):
    items = expand_inputs([str(librivox(testdata, 1)[0][0])])
    out = tmp_path / "r.jsonl"
    transcribe_to_jsonl(items, whisper_base, DecodeOptions(), out, progress=False)
    with pytest.raises(SpeechkitError, match="engine ctranslate2.*engine torch"):
        transcribe_to_jsonl(items, "whisper-base", DecodeOptions(), out, progress=False,
                            runtime=RuntimeOptions(device="cpu", engine="torch"))
    again = transcribe_to_jsonl(items, "whisper-base", DecodeOptions(), out, progress=False,
                                runtime=RuntimeOptions(device="cpu"))
    assert again.skipped == 1  # the same engine reuses its lines without loading anything


@pytest.mark.slow
def test_runs_of_one_or_many_files_size_their_threads_to_every_core(testdata, tmp_path, monkeypatch):
    from rich.console import Console

    from speechkit.transcribe import transcribe_to_jsonl

    monkeypatch.delenv(THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    try:
        clips = [str(p) for p, _ in librivox(testdata, 2)]
        quiet = Console(file=open(tmp_path / "log", "w"))  # noqa: SIM115
        every = default_threads()
        for files, want in ((clips[:1], every), (clips, every)):
            out = tmp_path / f"{len(files)}.jsonl"
            transcribe_to_jsonl(expand_inputs(files), "whisper-base", DecodeOptions(), out,
                                runtime=RuntimeOptions(device="cpu"), console=quiet, progress=False)
            runtimes = [r.model["runtime"] for r in read_results(out).values()]
            assert {r["threads"] for r in runtimes} == {want}
            # one file: one replica with every thread; many: one one-thread replica per core
            assert {r["replicas"] for r in runtimes} == {1 if len(files) == 1 else want}
    finally:
        torch.set_num_threads(before)

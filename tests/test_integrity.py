"""Results belong to their model and settings, every input counts once, nothing hangs.

The fast tests drive the results file and the inputs directly; the slow ones run the real
Whisper base model on real recordings.
"""

import json
import os
import subprocess
import sys
import threading
import time
import wave

import pytest

from speechkit.data import Result, read_results
from speechkit.errors import ItemError, SpeechkitError
from speechkit.inputs import read_manifest
from speechkit.media.ffmpeg import decode_audio
from speechkit.models.base import DecodeOptions
from speechkit.results import ResultWriter

WHISPER = {"name": "whisper-base", "family": "whisper", "source": "builtin:whisper-base",
           "sha256": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"}
OTHER = {"name": "ckpt", "type": "speechllm", "sha256": "ab" * 32, "quant": "fp32"}
GREEDY = DecodeOptions(beam_size=1, max_new_tokens=224).to_dict()
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def ok(item_id, model=WHISPER, decode=GREEDY, text=""):
    return Result(id=item_id, path=item_id, text=text, model=model, decode=decode)


def clips(testdata, n):
    return sorted((testdata / "librivox").glob("*.wav"))[:n]


def seconds(path):
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


# --- the results file ---------------------------------------------------------------------


def test_finished_lines_of_another_model_or_settings_are_not_reused(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultWriter(path) as w:
        w.write(ok("a"))
        w.write(Result(id="b", path="b", status="error", error="boom", model=OTHER))
    with ResultWriter(path) as w:
        w.check_reuse(["a", "b"], dict(WHISPER, name="renamed"), GREEDY)  # same weights
        with pytest.raises(SpeechkitError, match=r"1 finished item\(s\) were made with model "
                           r"whisper-base \(sha256 d01c3014881c\) and this run uses ckpt .*"
                           "--overwrite"):
            w.check_reuse(["a", "b"], OTHER, GREEDY)
        with pytest.raises(SpeechkitError, match="beam_size 1 and this run asks for beam_size 5"):
            w.check_reuse(["a"], WHISPER, {**GREEDY, "beam_size": 5})
        with pytest.raises(SpeechkitError, match="task 'transcribe'.* task 'translate'"):
            w.check_reuse(["a"], WHISPER, {**GREEDY, "task": "translate"})
        w.check_reuse(["b", "c"], OTHER, GREEDY)  # error lines are redone anyway
    with ResultWriter(path, overwrite=True) as w:
        w.check_reuse(["a"], OTHER, GREEDY)
        assert not w.done("a")


def test_overwrite_redoes_the_given_ids_and_keeps_the_others(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultWriter(path) as w:
        for i in "abc":
            w.write(ok(i, text=f"old {i}"))
    with ResultWriter(path, overwrite=True) as w:
        w.write(ok("b", model=OTHER, text="new b"))
        assert path.read_text().count('"id": "b"') == 2  # appended: the old line is still there
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(x["id"], x["text"]) for x in lines] == [("a", "old a"), ("c", "old c"), ("b", "new b")]


def test_a_torn_last_line_is_cut_off_and_a_whole_one_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultWriter(path) as w:
        w.write(ok("a"))
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"id": "b", "path": "b", "sta')
    with ResultWriter(path) as w:
        assert path.read_bytes() == whole and not w.done("b")
    path.write_bytes(whole + whole.rstrip(b"\n").replace(b'"a"', b'"c"'))
    with ResultWriter(path) as w:
        assert w.done("c") and path.read_bytes().endswith(b"}\n")


def test_results_go_to_a_regular_file_only(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    for bad, why in (("/dev/full", "not a regular file"), (str(fifo), "not a regular file"),
                     (str(tmp_path), "is a folder")):
        t0 = time.perf_counter()
        with pytest.raises(SpeechkitError, match=why):
            ResultWriter(bad)
        assert time.perf_counter() - t0 < 5
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpeechkitError, match="cannot hold results"):
        ResultWriter(tmp_path / "file" / "r.jsonl")
    with ResultWriter(tmp_path / "new" / "deeper" / "r.jsonl") as w:  # missing folders are made
        w.write(ok("a"))
    assert list(read_results(tmp_path / "new" / "deeper" / "r.jsonl")) == ["a"]
    with pytest.raises(SpeechkitError, match="not a regular file"):
        read_results(fifo)


def test_out_dev_stdout_into_a_pipe_is_a_usage_error(testdata, tmp_path):
    res = subprocess.run([sys.executable, "-m", "speechkit", "transcribe", str(clips(testdata, 1)[0]),
                          "--out", "/dev/stdout", "--no-progress"], capture_output=True, text=True,
                         timeout=120, env=ENV)
    assert res.returncode == 2 and res.stdout == ""
    assert "/dev/stdout is not a regular file" in res.stderr and "Traceback" not in res.stderr


HOLD = """
import sys
from speechkit.results import ResultWriter
from speechkit.data import Result
with ResultWriter(sys.argv[1]) as w:
    w.write(Result(id="held", path="held"))
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_second_writer_is_refused_while_the_first_runs(testdata, tmp_path):
    path = tmp_path / "r.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline() == "locked\n"
        for overwrite in (False, True):
            with pytest.raises(SpeechkitError, match=f"another speechkit run is writing {path}; "
                                                     "wait for it"):
                ResultWriter(path, overwrite=overwrite)
        res = subprocess.run([sys.executable, "-m", "speechkit", "transcribe",
                              str(clips(testdata, 1)[0]), "--out", str(path), "--overwrite",
                              "--no-progress"], capture_output=True, text=True, timeout=120, env=ENV)
        assert res.returncode == 2 and "error: another speechkit run is writing" in res.stderr
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0 and list(read_results(path)) == ["held"]
    with ResultWriter(path) as w:  # free again once the first has finished
        assert w.done("held")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]  # the lock file is gone


# --- inputs that are not regular files ------------------------------------------------------


def test_a_fifo_input_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "in.wav"
    os.mkfifo(fifo)
    # Should it block, a writer opened later unblocks it and the time check fails.
    rescue = threading.Timer(15, lambda: open(fifo, "wb").close())
    rescue.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ItemError, match="not a regular file"):
            decode_audio(fifo)
    finally:
        rescue.cancel()
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ItemError, match="not a regular file"):
        decode_audio("/dev/zero")


# --- end to end with the real model ---------------------------------------------------------


@pytest.mark.slow
def test_nemo_segments_of_one_real_file_give_one_result_each(whisper_base, testdata, tmp_path):
    from speechkit.evaluation.bench import run_bench
    from speechkit.transcribe import transcribe_items

    clip = clips(testdata, 1)[0]  # 7.1 s: "and mister john dashwood had then leisure ..."
    m = tmp_path / "segments.jsonl"
    m.write_text("".join(json.dumps(x) + "\n" for x in (
        {"audio_filepath": str(clip), "offset": 0, "duration": 2.5, "text": "and mister john"},
        {"audio_filepath": str(clip), "offset": 2.5, "duration": 2.5, "text": "then leisure"},
        {"audio_filepath": str(clip), "offset": 5.0, "text": "to do for them"})))
    stats = transcribe_items(read_manifest(m), whisper_base, DecodeOptions(), tmp_path / "r.jsonl")
    res = read_results(tmp_path / "r.jsonl")
    assert (stats.ok, len(res)) == (3, 3)
    durations = [r.duration_s for r in res.values()]
    assert durations == pytest.approx([2.5, 2.5, seconds(clip) - 5.0], abs=0.05)
    assert len({r.text for r in res.values()}) == 3 and all(r.text for r in res.values())
    summary = run_bench(m, whisper_base, task="asr", out_dir=tmp_path / "b", progress=False).summary
    assert summary["counts"]["scored"] == 3


@pytest.mark.slow
def test_a_fifo_among_real_inputs_is_one_error_line(whisper_base, testdata, tmp_path):
    from speechkit.inputs import expand_inputs
    from speechkit.transcribe import transcribe_items

    fifo = tmp_path / "live.wav"
    os.mkfifo(fifo)
    good = clips(testdata, 2)[1]
    stats = transcribe_items(expand_inputs([str(fifo), str(good)]), whisper_base, DecodeOptions(),
                             tmp_path / "r.jsonl")
    res = read_results(tmp_path / "r.jsonl")
    assert (stats.ok, stats.failed) == (1, 1)
    assert "not a regular file" in res[str(fifo)].error and res[str(good)].status == "ok"


NO_LOAD = """
import sys
from speechkit.cli import main
sys.argv = ["speechkit", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    print("exit", e.code, "transformers imported:", "transformers" in sys.modules)
"""


@pytest.mark.slow
def test_a_rerun_reuses_only_its_own_model_and_settings(whisper_base, testdata, tmp_path):
    from speechkit.inputs import expand_inputs
    from speechkit.transcribe import transcribe_to_jsonl

    out = tmp_path / "r.jsonl"
    items = expand_inputs([str(c) for c in clips(testdata, 2)[1:]])
    first = transcribe_to_jsonl(items, whisper_base, DecodeOptions(), out, progress=False)
    assert first.ok == 1
    before = out.read_bytes()
    for other in (DecodeOptions(beam_size=2), DecodeOptions(task="translate", language="en"),
                  DecodeOptions(language="de"), DecodeOptions(max_new_tokens=50)):
        with pytest.raises(SpeechkitError, match="finished item.*--overwrite"):
            transcribe_to_jsonl(items, "whisper-base", other, out, progress=False)
        assert out.read_bytes() == before
    # float32 weights give other output: their results are not the default int8's.
    from speechkit.models.registry import RuntimeOptions

    with pytest.raises(SpeechkitError, match="finished item.*--overwrite"):
        transcribe_to_jsonl(items, "whisper-base", DecodeOptions(), out, progress=False,
                            runtime=RuntimeOptions(device="cpu", dtype="float32"))
    assert out.read_bytes() == before
    # The same model and settings again: nothing to do, and the model is not even loaded.
    res = subprocess.run([sys.executable, "-c", NO_LOAD, "transcribe", items[0].path, "--out",
                          str(out), "--no-progress", "--beam-size", "1"],
                         capture_output=True, text=True, timeout=120, env=ENV)
    assert "exit 0 transformers imported: False" in res.stdout, res.stderr
    assert "nothing to do" in res.stderr and out.read_bytes() == before


@pytest.mark.slow
def test_overwrite_redoes_only_the_given_input_and_a_failed_one_changes_nothing(
        whisper_base, testdata, tmp_path):
    from speechkit.inputs import expand_inputs
    from speechkit.transcribe import transcribe_to_jsonl

    out = tmp_path / "r.jsonl"
    a, b = (expand_inputs([str(c)]) for c in clips(testdata, 3)[1:])
    transcribe_to_jsonl(a + b, whisper_base, DecodeOptions(), out, progress=False)
    before = out.read_bytes()
    with pytest.raises(SpeechkitError, match="Whisper model: it does --task transcribe or translate"):
        transcribe_to_jsonl(a, whisper_base, DecodeOptions(task="asr"), out, overwrite=True,
                            progress=False)
    assert out.read_bytes() == before
    again = transcribe_to_jsonl(a, whisper_base, DecodeOptions(beam_size=2), out, overwrite=True,
                                progress=False)
    assert again.ok == 1
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["id"] for x in lines) == sorted([a[0].id, b[0].id])  # once each
    assert {x["id"]: x["decode"]["beam_size"] for x in lines} == {a[0].id: 2, b[0].id: 1}


@pytest.mark.slow
def test_two_runs_on_one_out_never_duplicate_or_lose_a_line(whisper_base, testdata, tmp_path):
    out = tmp_path / "r.jsonl"
    inputs = [str(testdata / "cards" / "001.wav"), str(testdata / "cards" / "003.wav")]  # 1.1, 1.5 s
    cmd = [sys.executable, "-m", "speechkit", "transcribe", *inputs, "--out", str(out),
           "--no-progress", "--device", "cpu"]
    runs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                             env=ENV) for _ in range(2)]
    done = [(p.wait(timeout=300), p.stderr.read()) for p in runs]
    assert sorted(rc for rc, _ in done)[0] == 0, done
    for rc, err in done:  # the other waited for nothing to do, or was refused the lock
        assert rc == 0 or (rc == 2 and "another speechkit run is writing" in err), err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["id"] for x in lines) == sorted(inputs) and all(x["status"] == "ok"
                                                                    for x in lines)


# --- bench: a run directory belongs to one model --------------------------------------------


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A real (randomly initialised) speech-LLM checkpoint small enough for a CPU test."""
    from speechkit.models.speechllm import new_checkpoint
    from tests.test_speechllm_tiny import tiny_llm, tiny_whisper

    root = tmp_path_factory.mktemp("ckpt")
    out = root / "my-ckpt"
    new_checkpoint(out, audio_encoder=str(tiny_whisper(root / "enc")), llm=str(tiny_llm(root / "llm")),
                   bridge="linear", rate=4, hidden_dim=48, template="salmonn")
    spec = json.loads((out / "speechkit.json").read_text())
    spec["decode"] = {"beam_size": 1, "max_new_tokens": 4}
    (out / "speechkit.json").write_text(json.dumps(spec))
    return out


@pytest.mark.slow
def test_the_identity_known_before_loading_is_the_one_results_record(whisper_base, tiny_ckpt):
    from speechkit.models.identity import model_card
    from speechkit.models.speechllm import load_speechllm
    from speechkit.results import same_model

    asked = DecodeOptions(task="asr", beam_size=None, max_new_tokens=None)
    for name, loaded in (("whisper-base", whisper_base),
                         (str(tiny_ckpt), load_speechllm(str(tiny_ckpt), device="cpu"))):
        card = model_card(name)
        assert card.model is None and card.identity.get("sha256")
        assert same_model(loaded.describe(), card.identity)
        assert card.resolve(asked) == loaded.resolve(asked)
    assert model_card(str(tiny_ckpt)).resolve(asked).max_new_tokens == 4
    assert not same_model(whisper_base.describe(), model_card(str(tiny_ckpt)).identity)


@pytest.mark.slow
def test_bench_runs_of_two_models_never_share_results(whisper_base, tiny_ckpt, testdata, tmp_path,
                                                      monkeypatch):
    import io

    from rich.console import Console

    from speechkit.evaluation.bench import run_bench

    monkeypatch.chdir(tmp_path)
    kw = dict(data_root=testdata, limit=2, progress=False)
    first = run_bench("librivox-mini", whisper_base, **kw).summary
    mine = tmp_path / "bench" / "librivox-mini-test-whisper-base"
    assert first["counts"]["scored"] == 2 and (mine / "predictions.jsonl").is_file()
    before = (mine / "predictions.jsonl").read_bytes()
    # Another model into the same directory is refused before it decodes anything ...
    with pytest.raises(SpeechkitError, match=r"were made with model whisper-base .* --overwrite"):
        run_bench("librivox-mini", str(tiny_ckpt), out_dir=mine, **kw)
    assert (mine / "predictions.jsonl").read_bytes() == before
    # ... and by default it gets its own directory, where it decodes every item itself.
    other = run_bench("librivox-mini", str(tiny_ckpt), **kw).summary
    assert other["run"]["model"]["type"] == "speechllm"
    assert other["run"]["speed"]["items_decoded"] == 2
    assert (tmp_path / "bench" / "librivox-mini-test-my-ckpt" / "scores.json").is_file()
    # The same model and settings again: scored from the existing lines, the model not loaded.
    log = io.StringIO()
    again = run_bench("librivox-mini", "whisper-base", console=Console(file=log), **kw).summary
    assert "nothing to do" in log.getvalue() and again["metrics"] == first["metrics"]
    assert again["run"]["model"]["name"] == "whisper-base"
    assert again["run"]["runtime"] == first["run"]["runtime"]  # what the lines were made with


@pytest.mark.slow
def test_a_shard_merge_refuses_lines_of_other_settings(whisper_base, testdata, tmp_path):
    from speechkit.evaluation.bench import run_bench

    kw = dict(data_root=testdata, limit=2, progress=False, out_dir=tmp_path / "s")
    run_bench("librivox-mini", whisper_base, shard="0/2", **kw)
    with pytest.raises(SpeechkitError, match=r"predictions\.shard-0-of-2\.jsonl: 1 finished "
                                             r"item\(s\) were made with beam_size 1"):
        run_bench("librivox-mini", whisper_base, decode=DecodeOptions(beam_size=2), **kw)
    assert not (tmp_path / "s" / "predictions.jsonl").read_text()


def test_models_are_the_same_by_hash_or_before_download_by_source():
    from speechkit.results import same_model

    hub = {"name": "org/whisper", "source": "hub:org/whisper"}
    assert same_model(hub, {**hub, "sha256": "a"})  # known before and after the download
    assert not same_model({**hub, "sha256": "a"}, {**hub, "sha256": "b"})
    assert not same_model({"name": "x", "sha256": "a"}, {"name": "x", "sha256": "a", "quant": "int8"})
    assert not same_model(hub, {"name": "org/other", "source": "hub:org/other"})

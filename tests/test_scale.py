"""The Ray runner on a local 2-CPU Ray cluster (started once for this module) with the real
default model: it writes what the local runner writes, resumes across runners, survives a
killed worker, and sizes its workers to the cluster."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from speechkit.data import Item, read_results
from speechkit.errors import SpeechkitError
from speechkit.models.base import DecodeOptions
from speechkit.models.identity import model_card
from speechkit.models.registry import RuntimeOptions
from speechkit.results import ResultWriter
from speechkit.scale import ScaleOptions
from speechkit.scale.runner import RayRunner
from speechkit.transcribe import transcribe_to_jsonl
from tests.test_cli import librivox_clips, speechkit

CPU = RuntimeOptions(device="cpu")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def items(testdata, tmp_path_factory) -> list[Item]:
    """Four LibriVox clips and a file that is not audio."""
    bad = tmp_path_factory.mktemp("bad") / "not-audio.wav"
    bad.write_bytes(b"RIFF but not really a wav file")
    return [Item(id=p.stem, path=str(p)) for p in librivox_clips(testdata)[:4]] + [
        Item(id="not-audio", path=str(bad))]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _run(items, results: Path, scale: ScaleOptions, **kw):
    return transcribe_to_jsonl(items, "whisper-base", DecodeOptions(), results, runtime=CPU,
                               batch_size=1, progress=False, scale=scale, **kw)


@pytest.mark.slow
def test_a_ray_run_writes_what_the_local_run_writes_and_resumes_its_lines(
        ray_cluster, items, whisper_base, tmp_path):
    """Two workers, windows of 4 (batch size 1: each clip decoded alone on either runner);
    the Ray run starts from a file the local runner partly wrote."""
    local = tmp_path / "local.jsonl"
    transcribe_to_jsonl(items, whisper_base, DecodeOptions(), local, batch_size=1, progress=False)
    mixed = tmp_path / "mixed.jsonl"
    done = [line for line in local.read_text().splitlines(keepends=True)
            if json.loads(line)["id"] in {items[0].id, items[1].id}]
    mixed.write_text("".join(done))

    summary = _run(items, mixed, ScaleOptions("ray", workers=2))

    assert (summary.skipped, summary.ok, summary.failed) == (2, 2, 1)
    want, got = read_results(local), read_results(mixed)
    assert [r["id"] for r in _lines(mixed)].count("not-audio") == 1
    assert {i: (r.status, r.text, r.error) for i, r in got.items()} == {
        i: (r.status, r.text, r.error) for i, r in want.items()}
    assert got["not-audio"].status == "error" and "not-audio.wav" in got["not-audio"].error
    ran = [r for r in _lines(mixed)[2:] if r["status"] == "ok"]
    assert {r["model"]["runtime"]["runner"] for r in ran} == {"ray"}


def _kill_a_busy_worker(killed: list[int], done: threading.Event) -> None:
    """kill -9 this test's own Ray model actor once it is running a window: Ray titles the
    process `ray::MapWorker(MapBatches(ModelWorker)).submit` while it executes a task."""
    import psutil

    while not done.is_set():
        for p in psutil.Process().children(recursive=True):
            try:
                title = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if "ModelWorker" in title and ".submit" in title:
                os.kill(p.pid, signal.SIGKILL)
                killed.append(p.pid)
                return
        time.sleep(0.05)


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_no_item_and_duplicates_none(ray_cluster, items, tmp_path):
    clips = [it for it in items if it.id != "not-audio"]
    many = [Item(id=f"{it.id}-{k}", path=it.path) for k in range(2) for it in clips[:3]]  # 2 windows
    killed: list[int] = []
    done = threading.Event()
    killer = threading.Thread(target=_kill_a_busy_worker, args=(killed, done), daemon=True)
    results = tmp_path / "killed.jsonl"
    with ResultWriter(results) as writer:
        runner = RayRunner(model_card("whisper-base", CPU), DecodeOptions(), writer,
                           ScaleOptions("ray", workers=1), batch_size=1)
        killer.start()
        try:
            stats = runner.run(many)
        finally:
            done.set()

    assert killed, "the model worker was never seen running a window"
    ids = [r["id"] for r in _lines(results)]
    assert sorted(ids) == sorted(it.id for it in many)  # each once
    assert (stats.ok, stats.failed) == (len(many), 0)
    texts = {r["id"]: r["text"] for r in _lines(results)}
    assert all(texts[f"{it.id}-0"] == texts[f"{it.id}-1"] for it in clips[:3])


@pytest.mark.slow
def test_a_usage_error_on_a_worker_stops_the_run_with_its_one_line_message(ray_cluster, items,
                                                                         tmp_path):
    with ResultWriter(tmp_path / "r.jsonl") as writer, pytest.raises(
            SpeechkitError, match=r"^whisper-base is a Whisper model: it does --task transcribe"):
        RayRunner(model_card("whisper-base", CPU), DecodeOptions(task="sv"), writer,
                  ScaleOptions("ray", workers=1)).run(items[:1])


def test_workers_are_sized_to_the_cluster(ray_cluster):
    from speechkit.scale.cluster import plan_workers

    one = plan_workers(ScaleOptions("ray"), None, "cpu")
    two = plan_workers(ScaleOptions("ray", workers=2), None, "cpu")
    assert (one.workers, one.cpus, one.threads, one.gpus) == (1, 1.0, 1, 0.0)
    assert (two.workers, two.cpus, two.threads) == (2, 0.5, 1)
    assert one.decoders >= 1 and two.decoders >= 1  # decoding always has CPUs left
    with pytest.raises(SpeechkitError, match="has 0 GPU"):
        plan_workers(ScaleOptions("ray", gpus_per_worker=1), None, "auto")
    with pytest.raises(SpeechkitError, match="CPU workers cannot use a GPU"):
        plan_workers(ScaleOptions("ray", gpus_per_worker=0), None, "cuda")


def test_the_ray_runner_refuses_a_model_loaded_in_this_process(ray_cluster, whisper_base, tmp_path):
    with pytest.raises(SpeechkitError, match="loads the model on each worker"):
        transcribe_to_jsonl([Item(id="a", path="a.wav")], whisper_base, DecodeOptions(),
                            tmp_path / "r.jsonl", progress=False, scale=ScaleOptions("ray"))


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    from speechkit.scale import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without ray imports
    with pytest.raises(SpeechkitError, match=r"pip install 'speechkit\[ray\]'"):
        require_ray()


def test_ray_options_on_a_local_run_are_reported_as_ignored():
    assert ScaleOptions(workers=2, address="auto").unused_warnings() == [
        "--address is ignored: it sets up --runner ray, and this run is local",
        "--workers is ignored: it sets up --runner ray, and this run is local"]
    assert ScaleOptions("ray", workers=2).unused_warnings() == []


def test_an_unknown_runner_is_a_usage_error_before_anything_loads(tmp_path):
    r = speechkit("transcribe", tmp_path / "a.wav", "--runner", "spark")
    assert r.returncode == 2
    assert "unknown --runner 'spark'; use one of local, ray" in r.stderr


@pytest.mark.slow
def test_a_lip_reading_model_on_ray_writes_what_the_local_run_writes(ray_cluster, face_clips,
                                                                     tmp_path):
    from tests.llama_avsr_parts import tiny_llama_avsr

    checkpoint = str(tiny_llama_avsr(tmp_path))
    clips = [Item(id=name, path=str(c.path)) for name, c in face_clips.items()]
    options = DecodeOptions(task="vsr", max_new_tokens=4)
    runs = {}
    for name, scale in (("local", ScaleOptions()), ("ray", ScaleOptions("ray", workers=1))):
        out = tmp_path / f"{name}.jsonl"
        transcribe_to_jsonl(clips, checkpoint, options, out, runtime=CPU, batch_size=1,
                            progress=False, scale=scale)
        runs[name] = {r["id"]: (r["status"], r["text"], r["extras"].get("lips")) for r in _lines(out)}
    assert runs["ray"] == runs["local"]
    assert all(status == "ok" and lips["frames"] > 0 for status, _, lips in runs["ray"].values())

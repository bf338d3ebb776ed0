"""Whatever a manifest line or a path holds, it is that item's error and the rest runs; nothing
that is not a regular file is ever read (a FIFO, /dev/zero or a /proc file would hang)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechkit.data import Result, dumps_line
from speechkit.errors import SpeechkitError
from speechkit.inputs import read_manifest
from speechkit.merge import merge_results
from tests.test_cli import cli_env, librivox_clips

CASE_TIMEOUT = 60  # s: a hang fails the test instead of stalling the suite

# (manifest line, what its error says); every line but the last is hostile.
HOSTILE = [
    ("[" * 100000 + "]" * 100000, "nests deeper than 64 levels"),
    ('{"path": "a.wav", "meta": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}", "nests deeper"),
    ('{"path": "a.wav", "meta": ' + '{"a":' * 900 + "1" + "}" * 900 + "}", "nests deeper"),
    ('{"path": "a.wav", "id": "inf", "duration": 1e400}', "duration is Infinity"),
    ('{"path": "a.wav", "id": "nan", "duration": NaN}', "duration is NaN"),
    ('{"path": "a.wav", "id": "huge", "duration": ' + "9" * 400 + "}", "duration is 999"),
    ('{"path": "a.wav", "id": "digits", "duration": ' + "9" * 5000 + "}", "is not valid JSON"),
    ('{"path": "a.wav", "id": "far", "offset": 1e300}', "offset is 1e+300 s, out of range"),
    ('{"path": "a.wav", "id": "neg", "duration": -1}', "duration is -1"),
    ('{"path": "a.wav", "id": "zero", "duration": 0}', "duration is 0"),
    ('{"path": "a.wav", "id": "tiny", "duration": 1e-9}', "shorter than one sample"),
    ('{"path": "a.wav", "id": "neg-offset", "offset": -0.5}', "offset is -0.5"),
    ('{"path": "a.wav", "id": "sur\\ud800"}', "id holds '\\ud800', a lone surrogate"),
    ('{"path": "a.wav", "reference": "x\\udfffy"}', "reference holds"),
    ('{"path": "a.wav", "id": {"nested": 1}}', "id is not text or a whole number"),
    ('{"path": "a.wav", "id": true}', "id is not text or a whole number"),
    ('"just a string"', "is not a JSON object"),
    ('{"path": "/dev/zero", "id": "devzero"}', "not a regular file"),
    ('{"path": "fifo.wav", "id": "fifo"}', "not a regular file"),
    ('{"path": "/proc/self/status", "id": "proc"}', "a kernel file, not media"),
    ('{"path": "a.wav", "id": "good"}', None),
]


@pytest.fixture()
def hostile_manifest(testdata, tmp_path):
    (tmp_path / "a.wav").symlink_to(librivox_clips(testdata)[0])
    os.mkfifo(tmp_path / "fifo.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(line + "\n" for line, _ in HOSTILE), encoding="utf-8")
    return manifest


def test_every_hostile_manifest_line_is_its_own_error_item(hostile_manifest):
    items = read_manifest(hostile_manifest)
    assert len(items) == len(HOSTILE)
    for n, (item, (_, said)) in enumerate(zip(items, HOSTILE, strict=True), 1):
        if said is None or said in ("not a regular file", "a kernel file, not media"):
            assert item.error is None, item.error  # found when its media is opened
        else:
            assert item.error and said in item.error and f"m.jsonl:{n}" in item.error, (n, item.error)


def test_a_run_over_hostile_lines_writes_every_line_and_decodes_the_good_one(hostile_manifest):
    out = hostile_manifest.parent / "out.jsonl"
    run = subprocess.run([sys.executable, "-m", "speechkit", "transcribe", str(hostile_manifest),
                          "--model", "whisper-tiny.en", "--out", str(out)],
                         env=cli_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # some items failed, the run finished
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(HOSTILE)
    for n, (line, (_, said)) in enumerate(zip(lines, HOSTILE, strict=True), 1):
        if said is None:
            assert line["status"] == "ok" and "Dashwood" in line["text"]
        else:  # every error names its line, those found when the media is opened too
            assert line["status"] == "error" and said in line["error"], line["error"]
            assert line["error"].startswith(f"m.jsonl:{n}"), line["error"]


def test_a_results_line_nested_without_end_is_named_by_merge(tmp_path):
    shard = tmp_path / "a.jsonl"
    shard.write_text(dumps_line(Result(id="1", path="1.wav").to_dict()) + "[" * 100000 + "\n")
    with pytest.raises(SpeechkitError, match=r"a.jsonl:2 is not a result line \(nests deeper"):
        merge_results(tmp_path / "all.jsonl", [shard])


def test_proc_kmsg_is_never_read(tmp_path):
    if not os.path.exists("/proc/kmsg"):
        pytest.skip("this system has no /proc/kmsg")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "/proc/kmsg", "id": "kmsg"}\n')
    out = tmp_path / "out.jsonl"
    run = subprocess.run([sys.executable, "-m", "speechkit", "transcribe", str(manifest),
                          "--model", "whisper-tiny.en", "--out", str(out)],
                         env=cli_env(), capture_output=True, text=True, timeout=CASE_TIMEOUT)
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert run.returncode == 1 and line["status"] == "error"
    assert "/proc/kmsg" in line["error"]


# --- lips: paths that are no regular file, names that are not UTF-8, a damaged cache ------------


@pytest.fixture(scope="module")
def face_clip(ffmpeg, tmp_path_factory):
    """Two seconds of a real face photograph (scikit-image's astronaut) with a tone."""
    import skimage

    photo = Path(skimage.__file__).parent / "data" / "astronaut.png"
    out = tmp_path_factory.mktemp("face") / "face.mp4"
    subprocess.run([ffmpeg, "-nostdin", "-y", "-loglevel", "error", "-loop", "1", "-i", str(photo),
                    "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000", "-t", "2",
                    "-r", "25", "-vf", "scale=320:320,format=yuv420p", "-c:v", "libx264",
                    "-c:a", "aac", "-shortest", str(out)], check=True, timeout=CASE_TIMEOUT)
    return out


def lips(*args: str | Path, home: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechkit", "lips", *map(os.fsencode, args)],
                          env=cli_env(SPEECHKIT_HOME=str(home)), capture_output=True,
                          timeout=CASE_TIMEOUT, **kw)


def test_lips_on_a_fifo_and_dev_zero_says_so_and_crops_the_rest(face_clip, tmp_path):
    os.mkfifo(tmp_path / "fifo.mp4")
    (tmp_path / "devzero.mp4").symlink_to("/dev/zero")
    run = lips(tmp_path / "fifo.mp4", tmp_path / "devzero.mp4", face_clip, "--out", tmp_path / "out",
               home=tmp_path / "home")
    said = run.stderr.decode()
    assert run.returncode == 1
    assert f"{tmp_path / 'fifo.mp4'}: not a regular file" in said
    assert f"{tmp_path / 'devzero.mp4'}: not a regular file" in said
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["face.mp4", "face.png"]


def test_lips_on_a_name_that_is_not_utf8(face_clip, tmp_path):
    odd = os.path.join(os.fsencode(tmp_path), b"f\xffce.mp4")
    os.symlink(os.fsencode(face_clip), odd)
    run = lips(odd, "--out", tmp_path / "out", home=tmp_path / "home")
    assert run.returncode == 0, run.stderr
    assert b"f\\xffce.mp4: 50 frames, a face in 50" in run.stdout
    assert sorted(os.listdir(os.fsencode(tmp_path / "out"))) == [b"f\xffce.mp4", b"f\xffce.png"]


def test_lips_out_that_is_a_file_is_one_line(face_clip, tmp_path):
    (tmp_path / "taken").write_text("x")
    run = lips(face_clip, "--out", tmp_path / "taken", home=tmp_path / "home")
    said = run.stderr.decode().strip()
    assert run.returncode != 0 and len(said.splitlines()) == 1
    assert "--out" in said and "is a file; pass a folder" in said


def test_a_full_disk_leaves_no_truncated_output_and_goes_on(face_clip, tmp_path):
    import resource
    import signal

    def small_disk() -> None:  # writes past 2 kB fail, as on a full disk (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, 2_000))

    second = tmp_path / "again.mp4"
    second.symlink_to(face_clip)
    run = lips(face_clip, second, "--out", tmp_path / "out", home=tmp_path / "home",
               preexec_fn=small_disk)
    said = run.stderr.decode()
    assert run.returncode == 1
    assert said.count("not cached") == 2  # the cache write failed, the clip did not
    assert "cannot write" in said and "again" in said  # both clips were tried
    for p in (tmp_path / "out").iterdir():  # whole files or none: no truncated png/mp4
        assert not p.name.startswith("."), p
        if p.suffix == ".png":
            pytest.fail(f"{p} was written past the limit")


def test_a_cache_that_cannot_be_written_never_fails_a_clip(face_clip, tmp_path):
    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    run = lips(face_clip, "--out", tmp_path / "out", home=tmp_path / "blocked" / "home")
    assert run.returncode == 0, run.stderr
    assert "not cached" in run.stderr.decode()
    assert (tmp_path / "out" / "face.png").is_file()


@pytest.fixture()
def crop_cache(face_clip, tmp_path, monkeypatch):
    """The clip's crops computed once into a fresh cache: (its entry file, the crops)."""
    from speechkit.media.lips import cached_crops

    monkeypatch.setenv("SPEECHKIT_HOME", str(tmp_path / "home"))
    crops = cached_crops(face_clip)
    (entry,) = (tmp_path / "home" / "lips").rglob("*.npz")
    return entry, crops


def _same(a, b) -> bool:
    import numpy as np

    return (np.array_equal(a.crops, b.crops) and np.array_equal(a.has_face, b.has_face)
            and np.allclose(a.face_boxes, b.face_boxes) and a.frame_size == b.frame_size)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_cache_entry_is_named_and_computed_again(face_clip, crop_cache, caplog, damage):
    from speechkit.media.lips import cached_crops

    entry, fresh = crop_cache
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x40  # inside the crops array
    else:
        data = bytearray(b"not a zip at all")
    entry.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="speechkit"):
        again = cached_crops(face_clip)
    assert _same(again, fresh)
    assert str(entry) in caplog.text and "computed again" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="speechkit"):
        assert _same(cached_crops(face_clip), fresh)  # rewritten whole: no warning the next time
    assert caplog.text == ""


def test_an_entry_holding_another_clips_crops_is_not_used(face_clip, crop_cache, caplog, make_media):
    from speechkit.media.lips import cached_crops

    entry, fresh = crop_cache
    other = make_media("other.mp4", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "1")
    cached_crops(other)
    other_entry = next(p for p in entry.parent.parent.rglob("*.npz") if p != entry)
    entry.write_bytes(other_entry.read_bytes())  # a valid entry, of another file
    with caplog.at_level("WARNING", logger="speechkit"):
        again = cached_crops(face_clip)
    assert _same(again, fresh) and len(again.crops) == 50
    assert str(entry) in caplog.text and "another file or settings" in caplog.text


def test_lips_batch_goes_on_past_a_damaged_entry(face_clip, tmp_path):
    home = tmp_path / "home"
    assert lips(face_clip, "--out", tmp_path / "first", home=home).returncode == 0
    (entry,) = (home / "lips").rglob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    second = tmp_path / "again.mp4"
    second.symlink_to(face_clip)
    run = lips(face_clip, second, "--out", tmp_path / "out", home=home)
    assert run.returncode == 0, run.stderr
    assert str(entry) in run.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "again.mp4", "again.png", "face.mp4", "face.png"]


# --- bench: a suite file or manifest that is a FIFO or nests without end ---------------------------


@pytest.mark.parametrize(("name", "make", "said"), [
    ("suite.json", os.mkfifo, "not a regular file"),
    ("items.jsonl", os.mkfifo, "not a regular file"),
    ("suite.json", lambda p: Path(p).write_text("[" * 100000 + "]" * 100000), "nests deeper"),
    ("suite.json", lambda p: Path(p).write_text('{"a":' * 500 + "1" + "}" * 500), "nested at most"),
])
def test_bench_on_a_hostile_suite_file_is_one_line(tmp_path, name, make, said):
    path = tmp_path / name
    make(path)
    run = subprocess.run([sys.executable, "-m", "speechkit", "bench", str(path), "--task", "asr",
                          "--model", "whisper-tiny.en", "--out-dir", str(tmp_path / "run")],
                         env=cli_env(), capture_output=True, text=True, timeout=CASE_TIMEOUT)
    assert run.returncode != 0 and "unexpected" not in run.stderr
    assert [x for x in run.stderr.splitlines() if x.strip()] == [run.stderr.strip()], run.stderr
    assert said in run.stderr


def test_half_written_outputs_of_killed_runs_are_removed(face_clip, tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(gone.stdout)
    out, home = tmp_path / "out", tmp_path / "home"
    out.mkdir()
    (out / f".lips-{pid}-0a1b2c3d.partial.mp4").write_bytes(b"half a video")
    (out / ".lips-notes.txt").write_text("not ours")
    run = lips(face_clip, "--out", out, home=home)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == [".lips-notes.txt", "face.mp4", "face.png"]
    (entry,) = (home / "lips").rglob("*.npz")
    stale = entry.parent / f".{entry.name[:8]}.{pid}.x1y2.tmp"
    stale.write_bytes(b"half an entry")
    entry.unlink()
    assert lips(face_clip, "--out", tmp_path / "again", home=home).returncode == 0
    assert not stale.exists() and entry.exists()

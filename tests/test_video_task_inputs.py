"""vsr and avsr on inputs that are no regular file end each in its own error line, never a
hang; avsr on a video with a face and no sound decodes it from the lips alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import cli_env
from tests.test_hostile_inputs import face_clip  # noqa: F401  (the fixture)

CASE_TIMEOUT = 180  # s: the tiny model loads and two clips decode well within it


@pytest.fixture(scope="module")
def avsr(tmp_path_factory):
    from tests.llama_avsr_parts import tiny_llama_avsr

    return tiny_llama_avsr(tmp_path_factory.mktemp("avsr"))


def transcribe(model: Path, task: str, *inputs: Path, out: Path, home: Path) -> list[dict]:
    run = subprocess.run([sys.executable, "-m", "speechkit", "transcribe", *map(str, inputs),
                          "--model", str(model), "--task", task, "--out", str(out)],
                         env=cli_env(SPEECHKIT_HOME=str(home)), capture_output=True, text=True,
                         timeout=CASE_TIMEOUT)
    assert "unexpected" not in run.stderr, run.stderr
    return [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("task", ["vsr", "avsr"])
def test_a_fifo_and_dev_zero_are_item_errors_not_hangs(avsr, face_clip, tmp_path, task):  # noqa: F811
    os.mkfifo(tmp_path / "fifo.mp4")
    (tmp_path / "zero.mp4").symlink_to("/dev/zero")
    lines = transcribe(avsr, task, tmp_path / "fifo.mp4", tmp_path / "zero.mp4", face_clip,
                       out=tmp_path / "out.jsonl", home=tmp_path / "home")
    by_name = {Path(r["path"]).name: r for r in lines}
    for name in ("fifo.mp4", "zero.mp4"):
        assert by_name[name]["status"] == "error"
        assert "not a regular file" in by_name[name]["error"]
    assert by_name["face.mp4"]["status"] == "ok"


def test_avsr_on_a_video_without_sound_reads_the_lips(avsr, face_clip, ffmpeg, tmp_path):  # noqa: F811
    silent = tmp_path / "silent.mp4"
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(face_clip), "-an", "-c:v", "copy",
                    str(silent)], check=True, timeout=CASE_TIMEOUT)
    (line,) = transcribe(avsr, "avsr", silent, out=tmp_path / "out.jsonl", home=tmp_path / "home")
    assert line["status"] == "ok", line["error"]
    assert line["extras"]["fallback"] == "video_only"
    assert line["extras"]["lips"]["face_frames"] == 50
    assert line["duration_s"] == pytest.approx(2.0)

"""The runner gives a model that reads video its lip crops (from crop worker processes): vsr
fails an item without a face, avsr falls back to the audio and says so in the result. The
talking faces are the made clips of tests/face_media.py (a GRID-like .mpg and a TED-like .mp4)."""

from __future__ import annotations

import pytest

from speechkit.data import Item, read_results
from speechkit.media.ffmpeg import decode_audio
from speechkit.models.base import AUDIO, VIDEO, DecodeOptions, Hypothesis, SpeechModel
from speechkit.prepare import _prepare
from speechkit.transcribe import transcribe_items

pytest.importorskip("dlib")


class FrameCounter(SpeechModel):
    """Reads lips for vsr, audio and lips for avsr; answers with what it was given."""

    name = "frame-counter"
    kind = "lip-reading"
    modalities = frozenset({AUDIO, VIDEO})
    tasks = frozenset({"vsr", "avsr"})

    def streams(self, task: str) -> frozenset[str]:
        return frozenset({VIDEO}) if task == "vsr" else frozenset({AUDIO, VIDEO})

    def generate(self, batch, options, prompts=None, languages=None) -> list[Hypothesis]:
        out = []
        for x in batch:
            video = x.get(VIDEO)
            seen = [f"{len(video)} frames {video.shape[1]}x{video.shape[2]}" if video is not None
                    else "no video", f"{len(x[AUDIO])} samples" if AUDIO in x else "no audio"]
            out.append(Hypothesis(text=", ".join(seen)))
        return out


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHKIT_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def no_face(make_media):
    return make_media("screen.mp4", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2",
                      "-f", "lavfi", "-i", "sine=frequency=300:duration=2", "-shortest")


def audio_clock(path) -> int:
    """Frames the file's audio lasts at 25 fps."""
    return round(len(decode_audio(path)) / 16000 * 25)


def test_prepare_gives_vsr_the_lip_crops_alone(face_video):
    item = Item(id="grid", path=str(face_video))
    p = _prepare(item, FrameCounter(), "vsr", recordings=None)
    assert p.error is None and set(p.inputs) == {VIDEO}
    n = audio_clock(item.path)  # the audio's clock (2.99 s of speech under 75 frames)
    assert abs(n - 75) <= 1 and p.inputs[VIDEO].shape == (n, 88, 88) and p.spans == [(0.0, n / 25)]
    assert p.extras["lips"] == {"frames": n, "face_frames": n, "backend": "dlib"}


def test_avsr_lips_follow_the_audio_clock(face_video):
    item = Item(id="grid", path=str(face_video), offset_s=0.5, duration_s=2.0)
    p = _prepare(item, FrameCounter(), "avsr", recordings=None)
    assert set(p.inputs) == {AUDIO, VIDEO}
    assert len(p.inputs[VIDEO]) == round(len(p.inputs[AUDIO]) / 16000 * 25) == 50


def test_vsr_and_avsr_through_the_runner_with_crop_workers(face_clips, no_face, tmp_path):
    grid, ted = face_clips["grid"].path, face_clips["ted"].path
    items = [Item(id="grid", path=str(grid)), Item(id="ted", path=str(ted)),
             Item(id="screen", path=str(no_face))]
    vsr = transcribe_items(items, FrameCounter(), DecodeOptions(task="vsr"), tmp_path / "vsr.jsonl")
    assert (vsr.ok, vsr.failed) == (2, 1)
    res = read_results(tmp_path / "vsr.jsonl")
    assert res["grid"].text == f"{audio_clock(grid)} frames 88x88, no audio"
    assert res["ted"].text == f"{audio_clock(ted)} frames 88x88, no audio"
    assert res["ted"].extras["lips"]["face_frames"] == audio_clock(ted)
    assert "screen.mp4: no face found in any of its 50 video frames" in res["screen"].error

    avsr = transcribe_items(items, FrameCounter(), DecodeOptions(task="avsr"), tmp_path / "avsr.jsonl")
    assert (avsr.ok, avsr.failed) == (3, 0)
    res = read_results(tmp_path / "avsr.jsonl")
    samples = len(decode_audio(grid))
    assert res["grid"].text == f"{audio_clock(grid)} frames 88x88, {samples} samples"
    assert "fallback" not in res["grid"].extras
    screen = res["screen"]
    assert screen.text == "no video, 32000 samples"
    assert screen.extras["fallback"] == "audio_only"
    assert "no face found" in screen.extras["note"] and "audio alone" in screen.extras["note"]

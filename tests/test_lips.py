"""Lip crops on talking-face clips made from a photograph and real speech (tests/face_media.py:
a face that moves but a mouth that does not), on videos made from them with ffmpeg (no audio,
variable frame rate, one frame, rotated, a gap, two faces) and on videos with no face; and, in
the devset group, on the development set's real GRID and TED clips."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from speechkit.errors import ItemError, SpeechkitError
from speechkit.media.ffmpeg import probe
from speechkit.media.lips import lip_stream, load_backend
from speechkit.media.lips.cache import cache_dir
from speechkit.media.lips.stream import compute_crops

pytest.importorskip("dlib")
DEV_CLIPS = ("lipnet_grid_bbaf2n.mpg", "laalm_sample1.mp4")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHKIT_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module", params=["grid", "ted"])
def clip(request, face_clips):
    path = face_clips[request.param].path
    return path, lip_stream(path, cache=False)


def assert_one_crop_per_25th_of_a_second(path, stream):
    assert stream.fps == 25.0
    assert abs(len(stream.frames) - probe(path).duration_s * 25) <= 1


def assert_model_input_is_88x88_normalized_grayscale(stream):
    assert stream.frames.dtype == np.float32 and stream.frames.shape[1:] == (88, 88)
    assert stream.crops.dtype == np.uint8 and stream.crops.shape[1:] == (96, 96)
    expected = (stream.crops[:, 4:92, 4:92] / 255.0 - 0.421) / 0.165
    np.testing.assert_allclose(stream.frames, expected, atol=1e-5)
    assert -1.0 < stream.frames.mean() < 2.0 and stream.frames.std() > 0.2  # a face, not a flat field


def assert_mouth_box_inside_face_box_on_every_frame(stream):
    assert stream.face_frames == len(stream.frames)  # a face on every frame of these clips
    face, mouth = stream.face_boxes, stream.mouth_boxes
    assert np.isfinite(face).all() and np.isfinite(mouth).all()
    assert (mouth[:, 0] >= face[:, 0]).all() and (mouth[:, 1] >= face[:, 1]).all()
    assert (mouth[:, 2] <= face[:, 2]).all() and (mouth[:, 3] <= face[:, 3]).all()


def test_one_crop_per_25th_of_a_second_of_the_clip(clip):
    assert_one_crop_per_25th_of_a_second(*clip)


def test_model_input_is_88x88_normalized_grayscale(clip):
    assert_model_input_is_88x88_normalized_grayscale(clip[1])


def test_mouth_box_lies_inside_the_face_box_on_every_frame(clip):
    assert_mouth_box_inside_face_box_on_every_frame(clip[1])


def test_the_moving_face_is_followed(clip):
    # The clips drift, zoom and turn the photograph: the face box moves with it, by more than
    # the few pixels of a tracker that stood still.
    _, stream = clip
    centers = (stream.face_boxes[:, :2] + stream.face_boxes[:, 2:]) / 2
    assert np.ptp(centers, axis=0).max() > 10


@pytest.mark.parametrize("name", DEV_CLIPS)
def test_real_talking_face_clips_crop_every_frame_with_the_mouth_inside_the_face(dev_dir, name):
    # Real heads and real moving mouths (GRID and a TED-style clip), beside the made clips.
    path = dev_dir / "avsr" / name
    stream = lip_stream(path, cache=False)
    assert_one_crop_per_25th_of_a_second(path, stream)
    assert_model_input_is_88x88_normalized_grayscale(stream)
    assert_mouth_box_inside_face_box_on_every_frame(stream)


def test_a_video_with_no_face_is_an_item_error_that_says_so(make_media):
    path = make_media("noface.mp4", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1",
                      "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-shortest")
    with pytest.raises(ItemError, match=r"noface\.mp4: no face found in any of its 25 video frames"):
        lip_stream(path)


def test_a_video_with_no_face_is_searched_every_fifth_frame_and_caches_little(make_media):
    """A faceless video costs a fifth of the detections (dlib's detector is the slow part) and
    its cache entry is small (the crops of faceless frames are zeros, stored compressed)."""
    from speechkit.media.lips.frames import iter_frames
    from speechkit.media.lips.track import SEARCH_CLOSELY, SEARCH_EVERY, track_face

    path = make_media("noface8s.mp4", "-f", "lavfi", "-i",
                      "testsrc=size=320x240:rate=25:duration=8", "-f", "lavfi", "-i",
                      "sine=frequency=440:duration=8", "-shortest")
    backend, calls = load_backend("dlib"), []
    detect = backend.detect
    backend.detect = lambda frame: calls.append(1) or detect(frame)
    track = track_face(iter_frames(path), backend)
    assert len(track.landmarks) == 200 and np.isnan(track.landmarks).all()
    assert len(calls) <= SEARCH_CLOSELY + (200 - SEARCH_CLOSELY) // SEARCH_EVERY + 1, len(calls)
    with pytest.raises(ItemError, match="no face found"):
        lip_stream(path)
    (entry,) = cache_dir().rglob("*.npz")
    assert entry.stat().st_size < 100_000  # raw: 200 frames x 96 x 96 = 1.8 MB


def test_an_audio_file_has_no_video_stream(make_media):
    path = make_media("tone.wav", "-f", "lavfi", "-i", "sine=frequency=440:duration=1")
    with pytest.raises(ItemError, match="has no video stream"):
        lip_stream(path)


def test_a_video_without_audio_keeps_its_own_frame_count(face_video, make_media):
    path = make_media("mute.mp4", "-i", str(face_video), "-an", "-c:v", "libx264")
    stream = lip_stream(path)
    assert abs(len(stream.frames) - 75) <= 1 and stream.face_frames == len(stream.frames)


def test_variable_frame_rate_video_is_resampled_to_25_fps(face_video, make_media):
    # Keep 2 frames of every 5 with their timestamps: uneven gaps, 3 s long.
    path = make_media("vfr.mp4", "-i", str(face_video),
                      "-vf", "select='lt(mod(n\\,5)\\,2)'", "-fps_mode", "vfr", "-c:v", "libx264")
    assert "vfr" in path.name
    stream = lip_stream(path)
    assert abs(len(stream.frames) - round(probe(path).duration_s * 25)) <= 1
    assert len(stream.frames) >= 74 and stream.face_frames == len(stream.frames)


def test_a_one_frame_video_gives_one_crop(face_video, make_media):
    path = make_media("one.mp4", "-i", str(face_video), "-frames:v", "1", "-an",
                      "-c:v", "libx264")
    stream = lip_stream(path)
    assert stream.frames.shape == (1, 88, 88) and stream.face_frames == 1


def test_rotated_phone_video_comes_out_upright(face_video, make_media):
    # The pixels stored turned a quarter clockwise, with metadata saying to turn them back.
    src = face_video
    side = make_media("side.mp4", "-i", str(src), "-vf", "transpose=clock", "-c:v", "libx264",
                      "-c:a", "aac")
    try:  # ffmpeg 6.1+: counter-clockwise degrees on the input
        rotated = make_media("rotated.mp4", "-display_rotation:v:0", "90", "-i", str(side), "-c", "copy")
    except subprocess.CalledProcessError:  # older ffmpeg: the mp4 `rotate` tag, clockwise
        rotated = make_media("rotated.mp4", "-i", str(side), "-c", "copy", "-metadata:s:v:0", "rotate=270")
    upright, turned = lip_stream(src), lip_stream(rotated)
    assert len(turned.frames) == len(upright.frames) and turned.face_frames == len(turned.frames)
    corr = np.corrcoef(upright.crops.reshape(-1).astype(float), turned.crops.reshape(-1).astype(float))
    assert corr[0, 1] > 0.9


def test_frames_without_a_face_are_filled_from_their_neighbours(face_video, make_media):
    # One second of face, a quarter second of black, one second of face.
    src = str(face_video)
    path = make_media("gap.mp4", "-i", src, "-vf", "drawbox=enable='between(t,1,1.24)':c=black:t=fill",
                      "-t", "2.24", "-an", "-c:v", "libx264")
    crops = compute_crops(path)
    missing = np.flatnonzero(~crops.has_face)
    assert 5 <= len(missing) <= 8 and 24 <= missing[0] <= 26
    stream = lip_stream(path)
    assert stream.face_frames == len(stream.frames) - len(missing)
    # The gap's boxes lie between those of the frames on either side of it.
    before, after = crops.mouth_boxes[missing[0] - 1], crops.mouth_boxes[missing[-1] + 1]
    lo, hi = np.minimum(before, after) - 1e-3, np.maximum(before, after) + 1e-3
    assert ((crops.mouth_boxes[missing] >= lo) & (crops.mouth_boxes[missing] <= hi)).all()
    assert np.isfinite(stream.face_boxes).all()


def test_the_largest_face_is_the_one_followed(face_video, make_media):
    # The clip twice side by side, the right copy at 2/3 size (small enough to be the smaller
    # face, large enough for the detector to see it): the crops follow the left one.
    from speechkit.media.lips.frames import iter_frames
    from speechkit.media.lips.stream import _backend
    from speechkit.media.lips.track import DETECT_SIDE, _detect

    both = make_media("two.mp4", "-i", str(face_video), "-filter_complex",
                      "[0:v]split[a][b];[b]scale=iw*2/3:ih*2/3,pad=iw:ih*3/2[s];[a][s]hstack",
                      "-an", "-c:v", "libx264")
    left = probe(face_video).video_streams[0].width
    first = next(iter(iter_frames(both)))
    faces = _detect(_backend("dlib"), first, DETECT_SIDE)
    assert sorted(b[0] > left for b in faces) == [False, True]  # one face in each copy
    crops = compute_crops(both)
    assert crops.has_face.all()
    assert (crops.face_boxes[:, 2] <= left).all()


def test_crops_are_cached_per_file_content_and_settings(face_video, tmp_path, monkeypatch, caplog):
    from speechkit.media.lips import stream as lip_module

    path = face_video
    first = lip_stream(path)
    entries = list(cache_dir().rglob("*.npz"))
    assert len(entries) == 1
    real_compute = lip_module.compute_crops

    def no_tracking(*a, **kw):
        raise AssertionError("tracked again instead of reading the cache")

    monkeypatch.setattr(lip_module, "compute_crops", no_tracking)
    again = lip_stream(path)  # read from the cache: no tracking
    assert np.array_equal(again.crops, first.crops) and len(again.frames) == len(first.frames)
    # A doctored entry (its checksum no longer matches) is computed again, with a warning naming it.
    with np.load(entries[0]) as z:
        doctored = {k: z[k] for k in z.files}
    doctored["crops"] = np.full_like(doctored["crops"], 7)
    np.savez(entries[0], **doctored)
    monkeypatch.setattr(lip_module, "compute_crops", real_compute)
    redone = lip_stream(path)
    assert np.array_equal(redone.crops, first.crops)
    assert any(entries[0].name in r.getMessage() for r in caplog.records)
    lip_stream(path, duration_s=1.0)  # other settings: another entry
    assert len(list(cache_dir().rglob("*.npz"))) == 2


def test_an_unknown_backend_names_the_choices():
    with pytest.raises(SpeechkitError, match="unknown lip backend 'retina'; pass one of: dlib, mediapipe"):
        load_backend("retina")


def test_a_long_video_is_cropped_in_a_second_pass_with_the_same_crops(face_video, monkeypatch):
    from speechkit.media.lips import stream as lip_module

    path = face_video
    one_pass = compute_crops(path)
    monkeypatch.setattr(lip_module, "KEEP_FRAMES", 10)  # keep 10 frames: the clip has 75
    two_pass = compute_crops(path)
    assert np.array_equal(one_pass.crops, two_pass.crops) and len(two_pass.crops) == 75


def test_a_video_shorter_than_its_audio_is_padded_to_the_audio_clock(face_video, make_media, caplog):
    src = str(face_video)
    second = make_media("one_second.mp4", "-i", src, "-t", "1", "-an", "-c:v", "libx264")
    path = make_media("short_video.mp4", "-i", str(second), "-i", src, "-map", "0:v", "-map", "1:a",
                      "-c:v", "copy", "-c:a", "aac")
    stream = lip_stream(path)
    assert abs(len(stream.frames) - 75) <= 1  # the audio's 3 s, not the video's 1 s
    assert (stream.crops[30:] == stream.crops[24]).all()  # the last frame, repeated
    assert "the lip crops are padded with the last frame" in caplog.text

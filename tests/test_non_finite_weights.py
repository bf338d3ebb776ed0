"""A Whisper directory whose weights hold NaN or infinities is refused at load, naming the
tensor: decoding with it wrote "ok" lines of nonsense ("!")."""

from __future__ import annotations

import shutil

import pytest

from tests.test_cli import librivox_clips, speechkit


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_whisper_dir_with_non_finite_weights_is_refused(testdata, tmp_path, value):
    from safetensors.torch import load_file, save_file

    from speechkit.models.builtins import ensure_whisper

    model = tmp_path / "whisper"
    shutil.copytree(ensure_whisper("whisper-tiny.en"), model)
    tensors = load_file(str(model / "model.safetensors"))
    name = "model.decoder.layers.0.fc1.weight"
    tensors[name][0, 0] = value
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "out.jsonl"
    run = speechkit("transcribe", librivox_clips(testdata)[0], "--model", model, "--out", out,
                    timeout=300)
    assert run.returncode != 0
    assert f"tensor {name} holds NaN or infinite values (1 of" in run.stderr, run.stderr
    assert not out.exists() or "ok" not in out.read_text()

"""The int8 model.bin written on disk is the model CTranslate2 makes of the float16 file at
load: bit for bit the same encoder outputs, ids and scores, from a third of the peak memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from speechkit.media.ffmpeg import decode_audio
from speechkit.models.builtins import ct2_int8_dir, ct2_model_dir
from speechkit.models.importers.ct2 import read_ct2_model
from speechkit.models.importers.ct2_int8 import SCALE_SUFFIX, write_int8_model
from speechkit.models.whisper_mel import window_features
from tests.test_transcribe import librivox

pytestmark = pytest.mark.slow

PROMPT = [50258, 50259, 50359]  # <|startoftranscript|><|en|><|transcribe|>, whisper-base


def _load(folder, ct2):
    return ct2.models.Whisper(str(folder), device="cpu", compute_type="int8", intra_threads=1)


def test_int8_file_gives_the_models_own_int8_outputs_bit_for_bit(testdata):
    ct2 = pytest.importorskip("ctranslate2")
    clips = [decode_audio(p) for p, _ in librivox(testdata, 5)]
    features = ct2.StorageView.from_array(np.ascontiguousarray(window_features(clips, 80)[:, :, :1000]))
    runs = []
    for folder in (ct2_model_dir("whisper-base"), ct2_int8_dir("whisper-base")):
        model = _load(folder, ct2)
        enc = np.asarray(model.encode(features))
        states = ct2.StorageView.from_array(enc)
        decoded = [[(r.sequences_ids, r.scores) for r in model.generate(
            states, [PROMPT] * len(clips), beam_size=beam, num_hypotheses=beam, max_length=64,
            return_scores=True)] for beam in (1, 5)]
        runs.append((enc, decoded))
    (enc16, dec16), (enc8, dec8) = runs
    assert np.array_equal(enc16, enc8)
    assert dec16 == dec8  # greedy and beam 5: every hypothesis, its ids and score


def test_matrices_are_quantized_per_row_and_convolutions_kept(tmp_path):
    source = ct2_model_dir("whisper-base") / "model.bin"
    write_int8_model(source, tmp_path / "model.bin")
    before, after = read_ct2_model(source), read_ct2_model(tmp_path / "model.bin")
    assert after.aliases == before.aliases
    emb = "decoder/embeddings/weight"
    assert after.variables[emb].dtype == np.int8
    assert after.variables[emb + SCALE_SUFFIX].shape == (before.variables[emb].shape[0],)
    for conv in ("encoder/conv1/weight", "encoder/conv2/weight"):
        assert np.array_equal(after.variables[conv], before.variables[conv])
        assert conv + SCALE_SUFFIX not in after.variables
    row = before.variables[emb][7].astype(np.float32)
    scale = after.variables[emb + SCALE_SUFFIX][7]
    assert np.array_equal(after.variables[emb][7], np.rint(row * scale).astype(np.int8))
    assert np.abs(after.variables[emb][7]).max() == 127
    unquantized = [n for n in before.variables if n not in after.variables]
    assert unquantized == []
    with pytest.raises(ValueError, match="quantized already"):
        write_int8_model(tmp_path / "model.bin", tmp_path / "again.bin")


PEAK = """
import sys
from speechkit.heap import keep_freed_memory, loading_weights
keep_freed_memory()
import ctranslate2
with loading_weights():
    model = ctranslate2.models.Whisper(sys.argv[1], device="cpu", compute_type="int8")
print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_int8_file_loads_with_a_lower_peak():
    def peak_kb(folder):
        done = subprocess.run([sys.executable, "-c", PEAK, str(folder)], capture_output=True,
                              text=True, check=True)
        return int(done.stdout.split()[-1])

    float16, int8 = peak_kb(ct2_model_dir("whisper-base")), peak_kb(ct2_int8_dir("whisper-base"))
    assert int8 < float16 - 100_000  # kB: 117 MB against 287 MB here

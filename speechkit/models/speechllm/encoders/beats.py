"""BEATs (audio events) as a frozen speech-LLM encoder, as SALMONN uses it beside Whisper.

Input pipeline of the official `BEATs.preprocess`: the waveform times 2^15, a Kaldi fbank of
128 bins with 25 ms windows every 10 ms (`kaldi_fbank`, no dither), normalized as
(x - 15.41663) / (2 x 6.55582). Output: 8 frequency patches per 16 fbank frames, 50 tokens a
second like Whisper's encoder frames, so the two streams line up frame by frame.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechkit.audio import SAMPLE_RATE
from speechkit.errors import SpeechkitError
from speechkit.models.safe_load import load_plain_pickle, read_safetensors, refuse_non_finite
from speechkit.models.speechllm.checkpoint import EncoderSpec, load_state_strict
from speechkit.models.speechllm.encoders.base import Encoder
from speechkit.models.speechllm.encoders.beats_model import Beats, BeatsConfig, official_state
from speechkit.models.speechllm.encoders.kaldi_fbank import kaldi_fbank

WAVE_SCALE = 2 ** 15  # BEATs reads 16-bit sample values
FBANK_BINS = 128
FRAME_LENGTH_MS, FRAME_SHIFT_MS = 25.0, 10.0
FBANK_MEAN, FBANK_STD = 15.41663, 6.55582  # AudioSet statistics (BEATs.preprocess)
GRID_SAMPLES = 320  # samples per 50 Hz frame: Whisper's encoder rate, which BEATs is put on
CONFIG_FILE = "config.json"  # {"model_type": "beats", "cfg": BEATs cfg}
WEIGHTS_FILE = "model.safetensors"
RANDOM_SEED = 0  # source "random": the same weights on every load
BEATS_BATCH = 4  # 30 s windows per forward: 1,496 tokens attend to each other in every layer


def fbank(wave: np.ndarray) -> np.ndarray:
    """[frames, 128] normalized log-mel fbank of a 16 kHz waveform (BEATs.preprocess)."""
    bank = kaldi_fbank(wave.astype(np.float32) * WAVE_SCALE, bins=FBANK_BINS, rate=SAMPLE_RATE,
                       frame_ms=FRAME_LENGTH_MS, shift_ms=FRAME_SHIFT_MS)
    return ((bank - FBANK_MEAN) / (2 * FBANK_STD)).astype(np.float32)


def grid_frames(samples: int) -> int:
    """50 Hz frames a window of `samples` covers (Whisper: one per 320 samples, rounded up)."""
    return max(1, math.ceil(samples / GRID_SAMPLES))


def read_beats_checkpoint(file: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """`cfg` and `model` of an official BEATs `.pt`, read with torch's weights-only loader;
    anything else (other objects, no cfg/model) is refused."""
    if not Path(file).is_file():
        raise SpeechkitError(f"BEATs checkpoint {file}: no such file; pass the BEATs .pt file")
    obj = load_plain_pickle(file)
    if not (isinstance(obj, dict) and isinstance(obj.get("cfg"), dict)
            and isinstance(obj.get("model"), dict)):
        raise SpeechkitError(f"{file}: not a BEATs checkpoint (a dict with 'cfg' and 'model'); "
                             "pass the official BEATs .pt file")
    state = obj["model"]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SpeechkitError(f"{file}: its 'model' holds more than tensors; pass the official "
                             "BEATs .pt file")
    refuse_non_finite(state, file)
    return obj["cfg"], state


def write_beats_dir(directory: Path, cfg: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """BEATs as a safe directory: its cfg as JSON and the tensors it uses as safetensors (the
    position conv's weight norm folded, the predictor head and shared-bias copies left out)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    plain = {k: v for k, v in cfg.items() if isinstance(v, (int, float, str, bool)) or v is None}
    (directory / CONFIG_FILE).write_text(json.dumps({"model_type": "beats", "cfg": plain},
                                                    indent=2) + "\n")
    used, _ = official_state(state)
    save_file({k: v.clone().contiguous() for k, v in used.items()}, str(directory / WEIGHTS_FILE))


def beats_config(spec: EncoderSpec, directory: Path | None) -> BeatsConfig:
    """The config of a BEATs directory, or the spec's for source "random"."""
    if directory is None:
        return BeatsConfig.from_dict(spec.config or {})
    try:
        data = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        return BeatsConfig.from_dict(data["cfg"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SpeechkitError(f"{directory}: not a BEATs directory ({e}); convert the BEATs .pt "
                             "with `speechkit convert salmonn --beats FILE`") from None


class BeatsAudioEncoder(Encoder):
    """BEATs over each window; its tokens are put on the 50 Hz grid of the window (zero rows
    past its own output, which ends up to 4 tokens short of Whisper's frames per 30 s)."""

    def __init__(self, directory: Path | None, spec: EncoderSpec, device: str,
                 dtype: torch.dtype) -> None:
        cfg = beats_config(spec, directory)
        super().__init__(cfg.encoder_layers, False)
        if spec.layer_weights:
            raise SpeechkitError(f"encoder {spec.modality!r}: BEATs has no layer_weights option; "
                                 "set it to false")
        self.modality, self.dim = spec.modality, cfg.encoder_embed_dim
        self.window_samples = int(spec.window_s * SAMPLE_RATE)
        self.window_frames = grid_frames(self.window_samples)
        self.pad_window = spec.pad_window  # SALMONN: zero rows up to the whole window
        if directory is None:
            torch.manual_seed(RANDOM_SEED)
        self.model = Beats(cfg)
        if directory is not None:
            state, _ = official_state(read_safetensors(directory / WEIGHTS_FILE))
            load_state_strict(self.model, state, f"BEATs encoder {spec.source}")
        self.model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.device_, self.dtype_ = device, dtype

    def encode_windows(self, windows: list[np.ndarray]) -> list[torch.Tensor]:
        out = [torch.zeros(self.window_frames if self.pad_window
                           else min(self.window_frames, grid_frames(len(w))), self.dim,
                           device=self.device_, dtype=self.dtype_) for w in windows]
        banks = [fbank(w) for w in windows]
        patch = self.model.cfg.input_patch_size
        run = [i for i, b in enumerate(banks) if len(b) >= patch]  # shorter: no token at all
        for start in range(0, len(run), BEATS_BATCH):
            self._encode(banks, run[start:start + BEATS_BATCH], out)
        return out

    def _encode(self, banks: list[np.ndarray], run: list[int], out: list[torch.Tensor]) -> None:
        """BEATs over the fbanks `run` names (zero-padded to the longest); tokens into `out`."""
        patch = self.model.cfg.input_patch_size
        longest = max(len(banks[i]) for i in run)
        x = torch.zeros(len(run), longest - longest % patch, FBANK_BINS)
        for row, i in enumerate(run):
            usable = len(banks[i]) - len(banks[i]) % patch
            x[row, :usable] = torch.from_numpy(banks[i][:usable])
        frames = torch.tensor([len(banks[i]) for i in run])
        tokens, lengths = self.model(x.to(self.device_, self.dtype_), frames)
        for row, i in enumerate(run):
            n = min(int(lengths[row]), len(out[i]))
            out[i][:n] = tokens[row, :n]

"""The Whisper encoder as a frozen speech-LLM encoder (SALMONN, WavLLM, Llama-AVSR audio)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from speechkit.audio import SAMPLE_RATE
from speechkit.models.speechllm.checkpoint import EncoderSpec, load_state_strict
from speechkit.models.speechllm.encoders.base import Encoder, encoder_config
from speechkit.models.speechllm.sources import read_state_dict

WHISPER_HOP = 160  # samples per mel frame (10 ms at 16 kHz)
WHISPER_STRIDE = 2  # the second conv halves the mel rate: one encoder frame per 20 ms (50 Hz)


class WhisperAudioEncoder(Encoder):
    """The Whisper encoder; each window is padded to 30 s and trimmed back to its real frames."""

    def __init__(self, directory: Path | None, spec: EncoderSpec, device: str,
                 dtype: torch.dtype) -> None:
        from transformers import WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        config = encoder_config(spec, directory)
        super().__init__(config.encoder_layers, spec.layer_weights)
        self.modality, self.dim = spec.modality, config.d_model
        self.max_frames = config.max_source_positions  # 1500 encoder frames = 30 s
        full = self.max_frames * WHISPER_STRIDE * WHISPER_HOP
        self.window_samples = min(full, int(spec.window_s * SAMPLE_RATE))
        self.pad_window = spec.pad_window  # SALMONN: keep the frames over the padding too
        self.frame_rounding, self.min_frames = spec.frame_rounding, spec.min_frames
        self.features = WhisperFeatureExtractor(
            feature_size=config.num_mel_bins, chunk_length=full // SAMPLE_RATE)
        self.encoder = WhisperEncoder(config)
        if directory is not None:
            state = read_state_dict(directory, ("model.encoder.", "encoder."))
            load_state_strict(self.encoder, state, f"Whisper encoder {spec.source}")
        self.encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.device_, self.dtype_ = device, dtype

    def encode_windows(self, windows: list[np.ndarray]) -> list[torch.Tensor]:
        mels = self.features([w.astype(np.float32) for w in windows], sampling_rate=SAMPLE_RATE,
                             return_tensors="pt", padding="max_length").input_features
        out = self.encoder(mels.to(self.device_, self.dtype_),
                           output_hidden_states=self.layer_weights is not None)
        hidden = self._pick(out)
        frames = [min(self.max_frames, max(self.min_frames, self._frames(
            self.window_samples if self.pad_window else len(w)))) for w in windows]
        return [hidden[i, :n] for i, n in enumerate(frames)]

    def _frames(self, samples: int) -> int:
        """Encoder frames that hold audio: ceil, or Llama-AVSR's int(n / 16000 * 50)."""
        if self.frame_rounding == "floor":
            return int(samples / SAMPLE_RATE * (SAMPLE_RATE / (WHISPER_HOP * WHISPER_STRIDE)))
        return math.ceil(samples / (WHISPER_HOP * WHISPER_STRIDE))

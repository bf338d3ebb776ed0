"""The encoder interface: waveforms in, frame features out, any audio length (windows, not cuts)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechkit.audio import SAMPLE_RATE
from speechkit.models.safe_load import pretrained
from speechkit.models.speechllm.checkpoint import EncoderSpec
from speechkit.models.speechllm.sources import RANDOM, builtin_encoders, random_config, resolve_source

ENCODE_BATCH = 16  # windows per encoder forward pass


class Encoder(nn.Module, ABC):
    """Waveforms in, frame features out (padded batch + valid lengths); any audio length.

    A family subclasses this in its own file, is built as `cls(directory, spec, device, dtype)`
    (directory None for source "random") and is registered under its type in `ENCODERS`.
    """

    modality: str = "audio"  # its name (speechkit.json `encoders[].modality`)
    stream: str = "audio"  # the input stream it reads: "audio" or "video"
    dim: int = 0
    frame_rate: float = 50.0  # Hz
    window_samples: int = 30 * SAMPLE_RATE
    min_samples: int = 0  # shorter audio is zero-padded to this length first (spec `min_s`)
    wave_norm: bool = False  # each audio layer-normalized first (spec `wave_norm`)
    pad_last_window: bool = False  # past one window, the last one zero-padded to a whole one

    def __init__(self, num_layers: int, layer_weights: bool) -> None:
        super().__init__()
        # SpeechVerse: a learnable softmax-weighted sum over the embeddings + every layer output.
        self.layer_weights = nn.Parameter(torch.zeros(num_layers + 1)) if layer_weights else None

    @abstractmethod
    def encode_windows(self, windows: list[np.ndarray]) -> list[torch.Tensor]:
        """Encode windows of at most `window_samples` each; one [frames, dim] tensor per window."""

    def _pick(self, out: object) -> torch.Tensor:
        if self.layer_weights is None:
            return out.last_hidden_state  # type: ignore[attr-defined]
        states = torch.stack(out.hidden_states, dim=0)  # type: ignore[attr-defined]
        w = torch.softmax(self.layer_weights.float(), dim=0).to(states.device, states.dtype)
        return (w[:, None, None, None] * states).sum(0)

    @torch.inference_mode()
    def forward(self, audios: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode each audio (split in windows, concatenated); returns [B, T, D] and lengths [B]."""
        windows: list[np.ndarray] = []
        owner: list[int] = []
        for i, audio in enumerate(audios):
            if self.wave_norm:  # torch layer_norm over the whole clip, eps 1e-8 (Llama-AVSR)
                audio = _layer_norm(audio)
            if len(audio) < self.min_samples:
                audio = np.pad(audio, (0, self.min_samples - len(audio)))
            n = max(1, math.ceil(len(audio) / self.window_samples))
            if n > 1 and self.pad_last_window:
                audio = np.pad(audio, (0, n * self.window_samples - len(audio)))
            for w in range(n):
                windows.append(audio[w * self.window_samples:(w + 1) * self.window_samples])
                owner.append(i)
        feats: list[torch.Tensor] = []
        for s in range(0, len(windows), ENCODE_BATCH):
            feats.extend(self.encode_windows(windows[s:s + ENCODE_BATCH]))
        per_item: list[list[torch.Tensor]] = [[] for _ in audios]
        for i, f in zip(owner, feats, strict=True):
            per_item[i].append(f)
        joined = [torch.cat(parts, dim=0) for parts in per_item]
        lengths = torch.tensor([len(j) for j in joined])
        out = joined[0].new_zeros(len(joined), int(lengths.max()), joined[0].shape[-1])
        for i, j in enumerate(joined):
            out[i, :len(j)] = j
        return out, lengths


WAVE_NORM_EPS = 1e-8  # Llama-AVSR datamodule/transforms.py


def _layer_norm(audio: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return torch.nn.functional.layer_norm(x, x.shape, eps=WAVE_NORM_EPS).numpy()


def encoder_config(spec: EncoderSpec, directory: Path | None) -> object:
    """The encoder's transformers config: its directory's, or the spec's for source "random"."""
    from transformers import AutoConfig

    if directory is not None:
        return pretrained(AutoConfig, directory)
    return random_config(spec.config, spec.type, f"{spec.modality} encoder config")


def encoder_directory(spec: EncoderSpec) -> Path | None:
    """The encoder's checked local directory (None for source "random")."""
    return (None if spec.source == RANDOM
            else resolve_source(spec.source, builtin_encoders(), "encoder"))


def encoder_dim(spec: EncoderSpec) -> int:
    """Output feature size of an encoder, read from its config (no weights loaded)."""
    config = encoder_config(spec, encoder_directory(spec))
    return int(getattr(config, "d_model", None) or config.hidden_size)


def encoder_type(source: str) -> str:
    """Guess an encoder type from its config's model_type."""
    from transformers import AutoConfig

    config = pretrained(AutoConfig, resolve_source(source, builtin_encoders(), "encoder"))
    return config.model_type

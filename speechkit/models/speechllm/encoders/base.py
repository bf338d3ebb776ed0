"""Frozen audio encoders: Whisper, WavLM, HuBERT, wav2vec2; long audio in windows, not cut."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechkit.errors import SpeechkitError
from speechkit.models.base import SAMPLE_RATE
from speechkit.models.safe_load import pretrained
from speechkit.models.speechllm.checkpoint import EncoderSpec, load_state_strict
from speechkit.models.speechllm.sources import (
    RANDOM,
    builtin_encoders,
    random_config,
    read_state_dict,
    resolve_source,
)

WHISPER_HOP = 160  # samples per mel frame (10 ms at 16 kHz)
WHISPER_STRIDE = 2  # the second conv halves the mel rate: one encoder frame per 20 ms (50 Hz)
SSL_STRIDE = 320  # wav2vec2-family conv feature extractor: 20 ms per frame (50 Hz)
SSL_MIN_SAMPLES = 400  # receptive field of the first conv frame (25 ms)
ENCODE_BATCH = 16  # windows per encoder forward pass
SSL_PREFIXES = {"wavlm": ("wavlm.", ""), "hubert": ("hubert.", ""), "wav2vec2": ("wav2vec2.", "")}
SSL_HEADS = ("lm_head.", "classifier.", "projector.", "quantizer.", "project_q.", "project_hid.")


class Encoder(nn.Module, ABC):
    """Waveforms in, frame features out (padded batch + valid lengths); any audio length."""

    modality: str = "audio"
    dim: int = 0
    frame_rate: float = 50.0  # Hz
    window_samples: int = 30 * SAMPLE_RATE

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
            n = max(1, math.ceil(len(audio) / self.window_samples))
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


class WhisperAudioEncoder(Encoder):
    """The Whisper encoder; each window is padded to 30 s and trimmed back to its real frames."""

    def __init__(self, directory: Path | None, spec: EncoderSpec, device: str,
                 dtype: torch.dtype) -> None:
        from transformers import WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        config = _config(spec, directory)
        super().__init__(config.encoder_layers, spec.layer_weights)
        self.modality, self.dim = spec.modality, config.d_model
        self.max_frames = config.max_source_positions  # 1500 encoder frames = 30 s
        full = self.max_frames * WHISPER_STRIDE * WHISPER_HOP
        self.window_samples = min(full, int(spec.window_s * SAMPLE_RATE))
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
        frames = [min(self.max_frames, max(1, math.ceil(len(w) / (WHISPER_HOP * WHISPER_STRIDE))))
                  for w in windows]
        return [hidden[i, :n] for i, n in enumerate(frames)]


class SSLAudioEncoder(Encoder):
    """WavLM / HuBERT / wav2vec2 base models from transformers (heads dropped)."""

    def __init__(self, directory: Path | None, spec: EncoderSpec, device: str,
                 dtype: torch.dtype) -> None:
        from transformers import AutoModel

        config = _config(spec, directory)
        if config.model_type != spec.type:
            raise SpeechkitError(f"encoder {spec.modality!r}: the spec says type {spec.type!r} "
                                 f"but {spec.source} is a {config.model_type!r} model")
        super().__init__(config.num_hidden_layers, spec.layer_weights)
        self.modality, self.dim = spec.modality, config.hidden_size
        self.window_samples = int(spec.window_s * SAMPLE_RATE)
        self.model = AutoModel.from_config(config, trust_remote_code=False)
        if directory is not None:
            state = read_state_dict(directory, SSL_PREFIXES[spec.type])
            state = {k: v for k, v in state.items() if not k.startswith(SSL_HEADS)}
            load_state_strict(self.model, state, f"{spec.type} encoder {spec.source}")
        self.model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.normalize = _wants_normalize(directory)
        # Group-norm feature extractors (wav2vec2-base, HuBERT-base) mix padding into every
        # frame, so those windows run one at a time; layer-norm ones take an attention mask.
        self.batchable = getattr(config, "feat_extract_norm", "layer") == "layer"
        self.device_, self.dtype_ = device, dtype

    def _frames(self, n: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(n)))

    def encode_windows(self, windows: list[np.ndarray]) -> list[torch.Tensor]:
        waves = [_pad_min(w.astype(np.float32)) for w in windows]
        if self.normalize:
            waves = [(w - w.mean()) / np.sqrt(w.var() + 1e-7) for w in waves]
        groups = [waves] if self.batchable else [[w] for w in waves]
        out: list[torch.Tensor] = []
        for group in groups:
            longest = max(len(w) for w in group)
            x = torch.zeros(len(group), longest)
            mask = torch.zeros(len(group), longest, dtype=torch.long)
            for i, w in enumerate(group):
                x[i, :len(w)] = torch.from_numpy(w)
                mask[i, :len(w)] = 1
            res = self.model(x.to(self.device_, self.dtype_), attention_mask=mask.to(self.device_),
                             output_hidden_states=self.layer_weights is not None)
            hidden = self._pick(res)
            out.extend(hidden[i, :self._frames(len(w))] for i, w in enumerate(group))
        return out


def _pad_min(w: np.ndarray) -> np.ndarray:
    return w if len(w) >= SSL_MIN_SAMPLES else np.pad(w, (0, SSL_MIN_SAMPLES - len(w)))


def _wants_normalize(directory: Path | None) -> bool:
    import json

    try:
        cfg = json.loads((directory / "preprocessor_config.json").read_text())  # type: ignore[operator]
    except (OSError, TypeError, ValueError):
        return True  # WavLM-large and most fine-tuned models normalize each utterance
    return bool(cfg.get("do_normalize", True))


def _config(spec: EncoderSpec, directory: Path | None) -> object:
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
    config = _config(spec, encoder_directory(spec))
    return int(getattr(config, "d_model", None) or config.hidden_size)


def encoder_type(source: str) -> str:
    """Guess an encoder type from its config's model_type."""
    from transformers import AutoConfig

    config = pretrained(AutoConfig, resolve_source(source, builtin_encoders(), "encoder"))
    return config.model_type


def load_encoder(spec: EncoderSpec, device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Encoder:
    """Build the encoder a spec names and load its frozen weights."""
    directory = encoder_directory(spec)
    cls = WhisperAudioEncoder if spec.type == "whisper" else SSLAudioEncoder
    encoder = cls(directory, spec, device, dtype)
    if spec.dim and spec.dim != encoder.dim:
        raise SpeechkitError(f"encoder {spec.modality!r}: speechkit.json says dim {spec.dim} but "
                             f"{spec.source} outputs {encoder.dim} features")
    return encoder

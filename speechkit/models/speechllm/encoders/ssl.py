"""Self-supervised speech encoders from transformers: WavLM, HuBERT, wav2vec2 (heads dropped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from speechkit.audio import SAMPLE_RATE
from speechkit.errors import SpeechkitError
from speechkit.models.speechllm.checkpoint import EncoderSpec, load_state_strict
from speechkit.models.speechllm.encoders.base import Encoder, encoder_config
from speechkit.models.speechllm.sources import read_state_dict

SSL_MIN_SAMPLES = 400  # receptive field of the first conv frame (25 ms)
# Encoder type -> key prefixes its base-model weights may carry in a checkpoint.
SSL_PREFIXES = {"wavlm": ("wavlm.", ""), "hubert": ("hubert.", ""), "wav2vec2": ("wav2vec2.", "")}
SSL_HEADS = ("lm_head.", "classifier.", "projector.", "quantizer.", "project_q.", "project_hid.")


class SSLAudioEncoder(Encoder):
    """WavLM / HuBERT / wav2vec2 base models from transformers (heads dropped)."""

    def __init__(self, directory: Path | None, spec: EncoderSpec, device: str,
                 dtype: torch.dtype) -> None:
        from transformers import AutoModel

        config = encoder_config(spec, directory)
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

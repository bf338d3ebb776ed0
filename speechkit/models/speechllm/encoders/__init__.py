"""Frozen encoders of speech LLMs, one file per family behind one interface (`Encoder`)."""

from __future__ import annotations

import torch

from speechkit.audio import SAMPLE_RATE
from speechkit.errors import SpeechkitError
from speechkit.models.speechllm.checkpoint import EncoderSpec
from speechkit.models.speechllm.encoders.base import (
    Encoder,
    encoder_config,
    encoder_dim,
    encoder_directory,
    encoder_type,
)
from speechkit.models.speechllm.encoders.beats import BeatsAudioEncoder
from speechkit.models.speechllm.encoders.ssl import SSL_PREFIXES, SSLAudioEncoder
from speechkit.models.speechllm.encoders.video import VideoEncoder
from speechkit.models.speechllm.encoders.whisper import WhisperAudioEncoder

# Encoder type (speechkit.json `encoders[].type`, the transformers model_type) -> class.
ENCODERS: dict[str, type[Encoder]] = {"whisper": WhisperAudioEncoder,
                                      **dict.fromkeys(SSL_PREFIXES, SSLAudioEncoder),
                                      "avhubert": VideoEncoder, "auto_avsr": VideoEncoder,  # lips
                                      "beats": BeatsAudioEncoder}


def load_encoder(spec: EncoderSpec, device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Encoder:
    """Build the encoder a spec names and load its frozen weights."""
    directory = encoder_directory(spec)
    encoder = ENCODERS[spec.type](directory, spec, device, dtype)
    encoder.min_samples = int(spec.min_s * SAMPLE_RATE)
    encoder.wave_norm = spec.wave_norm
    encoder.pad_last_window = spec.pad_last_window
    if spec.stream != encoder.stream:
        raise SpeechkitError(f"encoder {spec.modality!r}: a {spec.type} encoder reads the "
                             f"{encoder.stream} stream, not {spec.stream!r}; fix encoders[].stream")
    if spec.dim and spec.dim != encoder.dim:
        raise SpeechkitError(f"encoder {spec.modality!r}: speechkit.json says dim {spec.dim} but "
                             f"{spec.source} outputs {encoder.dim} features")
    return encoder


__all__ = ["ENCODERS", "Encoder", "encoder_config", "encoder_dim", "encoder_directory",
           "encoder_type", "load_encoder"]

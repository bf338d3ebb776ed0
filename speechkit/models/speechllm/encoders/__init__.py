"""Frozen encoders of speech LLMs."""

from speechkit.models.speechllm.encoders.base import (
    Encoder,
    encoder_dim,
    encoder_directory,
    encoder_type,
    load_encoder,
)

__all__ = ["Encoder", "encoder_dim", "encoder_directory", "encoder_type", "load_encoder"]

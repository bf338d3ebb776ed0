"""Speech LLMs: frozen encoders + bridge + LoRA-adapted LLM, from a speechkit checkpoint dir."""

from __future__ import annotations

from speechkit.models.speechllm.checkpoint import CheckpointSpec, is_speechllm_checkpoint, read_spec
from speechkit.models.speechllm.create import new_checkpoint
from speechkit.models.speechllm.model import SpeechLLM, load_speechllm

__all__ = ["CheckpointSpec", "SpeechLLM", "is_speechllm_checkpoint", "load_speechllm",
           "new_checkpoint", "read_spec"]

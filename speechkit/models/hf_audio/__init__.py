"""transformers' audio-text-to-text models (Qwen2-Audio, Voxtral, Audio Flamingo 3): one
backend, one record per family."""

from __future__ import annotations

from speechkit.models.hf_audio.audioflamingo3 import AUDIO_FLAMINGO_3
from speechkit.models.hf_audio.family import Family
from speechkit.models.hf_audio.loading import family_of, load_hf_audio
from speechkit.models.hf_audio.qwen2_audio import QWEN2_AUDIO
from speechkit.models.hf_audio.voxtral import VOXTRAL

# The families speechkit runs, by config.json `model_type`.
FAMILIES: dict[str, Family] = {f.model_type: f for f in (QWEN2_AUDIO, VOXTRAL, AUDIO_FLAMINGO_3)}

__all__ = ["FAMILIES", "Family", "family_of", "load_hf_audio"]

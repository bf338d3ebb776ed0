"""transformers' audio-text-to-text models (Qwen2-Audio, Voxtral, Audio Flamingo 3): one
backend, one record per family."""

from __future__ import annotations

from pathlib import Path

from speechkit.models.hf_audio.audioflamingo3 import AUDIO_FLAMINGO_3
from speechkit.models.hf_audio.family import Family
from speechkit.models.hf_audio.loading import family_of, load_hf_audio
from speechkit.models.hf_audio.qwen2_audio import QWEN2_AUDIO
from speechkit.models.hf_audio.voxtral import VOXTRAL

# The families speechkit runs, by config.json `model_type`.
FAMILIES: dict[str, Family] = {f.model_type: f for f in (QWEN2_AUDIO, VOXTRAL, AUDIO_FLAMINGO_3)}

# transformers families speechkit does not run yet, and why (named when --model points at one).
NOT_YET = {
    "granite_speech": "its feature extractor needs torchaudio",
    "phi4_multimodal": "its processor needs torchvision (image processor)",
    "qwen2_5_omni": "its processor needs torchvision (video processor)",
    "qwen2_5_omni_thinker": "its processor needs torchvision (video processor)",
}



def not_yet(path: Path) -> None:
    """Name the reason when `path` is a transformers audio model speechkit does not run yet."""
    from speechkit.errors import SpeechkitError
    from speechkit.models.hf_audio.loading import model_type_of

    kind = model_type_of(path) or ""
    if kind in NOT_YET:
        raise SpeechkitError(f"{path}: speechkit does not run {kind} models yet ({NOT_YET[kind]}); "
                             f"audio LLMs it runs: {', '.join(FAMILIES)}")


__all__ = ["FAMILIES", "NOT_YET", "Family", "family_of", "load_hf_audio", "not_yet"]

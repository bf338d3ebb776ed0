"""Voxtral (mistralai/Voxtral-Mini-3B-2507, Voxtral-Small-24B-2507): Whisper encoder, Mistral LLM.

Its processor tokenizes through mistral-common (Mistral's own tokenizer, `tekken.json`), which
takes audio as files or base64 and counts the audio tokens itself; speechkit hands it each clip
as a lossless float32 WAV.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from speechkit.models.base import SAMPLE_RATE
from speechkit.models.hf_audio.family import Family


def wav_base64(audio: np.ndarray) -> str:
    """A waveform as base64 of a float32 WAV file (lossless: the samples arrive as they are)."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class VoxtralFamily(Family):
    """Voxtral: the processor's `apply_chat_template` tokenizes the turn and its audio at once."""

    def conversation_with(self, prompt: str, clips: list[np.ndarray]) -> list[dict[str, Any]]:
        content = [{"type": "audio", "base64": wav_base64(c)} for c in clips]
        return [{"role": "user", "content": [*content, {"type": "text", "text": prompt}]}]

    def inputs(self, processor: Any, prompts: list[str], clips: list[list[np.ndarray]]) -> Any:
        turns = [self.conversation_with(p, c) for p, c in zip(prompts, clips, strict=True)]
        return processor.apply_chat_template(turns)


VOXTRAL = VoxtralFamily(
    model_type="voxtral", title="Voxtral", model_class="VoxtralForConditionalGeneration",
    # The processor pads audio to 30 s chunks and the encoder reads every chunk; Mistral gives
    # 30 minutes as the transcription limit (40 for understanding): longer audio is windowed.
    window_s=1800.0, window_source="Mistral's documented 30 min limit; the processor encodes it in "
    "30 s chunks", audio_marker="[BEGIN_AUDIO]",
    keep_float=("audio_tower", "multi_modal_projector", "lm_head"),
    needs=("mistral_common", "pip install 'mistral-common[audio]>=1.8,<2' (speechkit[voxtral])"))

"""Qwen2-Audio (Qwen/Qwen2-Audio-7B-Instruct): Whisper-large encoder, Qwen2 LLM."""

from __future__ import annotations

from speechkit.models.hf_audio.family import Family

QWEN2_AUDIO = Family(
    model_type="qwen2_audio", title="Qwen2-Audio",
    model_class="Qwen2AudioForConditionalGeneration",
    # Its processor pads or cuts every clip to 3000 mel frames (the encoder's fixed input).
    window_s=30.0, window_source="Qwen2AudioProcessor pads/cuts each clip to 3000 frames (30 s)",
    audio_marker="<|audio_bos|>", keep_float=("audio_tower", "multi_modal_projector", "lm_head"))

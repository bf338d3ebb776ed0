"""Audio Flamingo 3 (nvidia/audio-flamingo-3-hf): AF-Whisper encoder, Qwen2.5 LLM.

Its processor takes exactly one clip per text, so a verification trial is one waveform: the
enrollment, a second of silence, the test (as speechkit's own speech LLMs read trials).
"""

from __future__ import annotations

from speechkit.models.hf_audio.family import Family

AUDIO_FLAMINGO_3 = Family(
    model_type="audioflamingo3", title="Audio Flamingo 3",
    model_class="AudioFlamingo3ForConditionalGeneration",
    # AudioFlamingo3Processor: max_audio_len 600 s, encoded in 30 s windows; it cuts the rest.
    window_s=600.0, window_source="AudioFlamingo3Processor max_audio_len (600 s, in 30 s windows)",
    audio_marker="<sound>", clips_per_turn=1, call_kwargs={},
    keep_float=("audio_tower", "multi_modal_projector", "lm_head"))

"""What differs between transformers' audio-text-to-text families: one `Family` record each.

A family names its transformers class, how many seconds of audio one clip may hold, the tasks
it is asked to do, its prompts, and how its own processor turns chat texts and waveforms into
model inputs. The backend (`model.py`) does the rest the same way for every family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speechkit.tasks import TASKS

# The speechkit tasks these models are asked to do; sv is a yes/no question over two clips.
AUDIO_TASKS = ("asr", "st", "er", "sv", "sqa", "aac")
# The task registry's prompts (SALMONN's), except verification, which names both clips.
DEFAULT_PROMPTS = {**{t: TASKS[t].prompt for t in AUDIO_TASKS if TASKS[t].prompt},
                   "sv": "Is the speaker of the first audio the same person as the speaker of "
                         "the second audio? Answer yes or no."}


@dataclass(frozen=True)
class Family:
    """One transformers audio-text-to-text family, as speechkit runs it."""

    model_type: str  # config.json `model_type`
    title: str  # the name researchers know it by
    model_class: str  # the transformers class that generates text for it
    window_s: float  # seconds of audio one clip may hold (longer audio: several windows)
    window_source: str  # where the window comes from (documented in `speechkit models`)
    tasks: tuple[str, ...] = AUDIO_TASKS
    prompts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROMPTS))
    keep_float: tuple[str, ...] = ()  # modules left unquantized under --quant 4bit/8bit
    audio_marker: str = "<|AUDIO|>"  # the token that opens one clip in the model's input
    # Passed to the processor: Qwen2-Audio's pads texts only when asked (its audio is always
    # padded to 30 s); Audio Flamingo 3's pads texts itself and must leave its audio alone.
    call_kwargs: dict[str, Any] = field(default_factory=lambda: {"padding": True})
    clips_per_turn: int = 2  # 1: a verification trial's two recordings are joined into one clip
    needs: tuple[str, str] | None = None  # (module, pip install) its processor needs beyond
    #                                       speechkit's own dependencies, if any

    def conversation(self, prompt: str, n_audio: int) -> list[dict[str, Any]]:
        """One user turn: the clips, then the instruction (the layout of the model cards)."""
        content = [{"type": "audio"} for _ in range(n_audio)]
        return [{"role": "user", "content": [*content, {"type": "text", "text": prompt}]}]

    def chat_text(self, processor: Any, prompt: str, n_audio: int) -> str:
        """The prompt through the model's own chat template, up to the assistant's turn."""
        return processor.apply_chat_template(self.conversation(prompt, n_audio),
                                             add_generation_prompt=True, tokenize=False)

    def inputs(self, processor: Any, prompts: list[str], clips: list[list[np.ndarray]]) -> Any:
        """The model inputs of a batch of turns (an instruction and its clips each): the chat
        text with one audio placeholder per clip, then the processor over texts and clips."""
        texts = [self.chat_text(processor, p, len(c)) for p, c in zip(prompts, clips, strict=True)]
        flat = [c for item in clips for c in item]
        return processor(text=texts, audio=flat, sampling_rate=16000, return_tensors="pt",
                         **self.call_kwargs)

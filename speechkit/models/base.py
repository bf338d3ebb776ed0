"""The seam every model backend plugs into: audio arrays in, hypotheses out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from speechkit.audio import SAMPLE_RATE as SAMPLE_RATE  # re-exported for the backends
from speechkit.data import Segment


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode. Recorded verbatim in every result line."""

    task: str = "transcribe"  # whisper: transcribe | translate; speech LLMs: asr, st, er, sv, sqa, aac
    language: str | None = None  # source language; None = detect
    target_language: str | None = None  # speech translation target (speech LLMs)
    beam_size: int | None = None  # 1 = greedy; None = the model's default
    max_new_tokens: int | None = None  # None = the model's default
    prompt: str | None = None  # overrides the task prompt (speech LLMs)
    word_timestamps: bool = False  # Whisper: a start and end time for every word

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hypothesis:
    """One decoded output for one audio input."""

    text: str
    language: str | None = None
    segments: list[Segment] = field(default_factory=list)  # times relative to the input
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. {"p_yes": 0.93}


class SpeechModel(ABC):
    """A loaded model that turns a batch of 16 kHz waveforms into hypotheses."""

    name: str = "model"
    max_input_s: float = 30.0  # longer inputs are segmented before they reach the model

    @property
    def device(self) -> str:
        return "cpu"

    @abstractmethod
    def generate(
        self, audios: list[np.ndarray], options: DecodeOptions, prompts: list[str | None] | None = None,
        languages: list[str | None] | None = None,
    ) -> list[Hypothesis]:
        """Decode a batch; one hypothesis per input, in input order. `languages`: each input's
        spoken language where the caller knows it (None = the options' or detected)."""

    def detect_language(self, audios: list[np.ndarray]) -> list[str | None]:
        """Each clip's spoken language, for models that can tell (None where they cannot)."""
        return [None] * len(audios)

    default_beam_size: int = 1
    default_max_new_tokens: int = 200

    def resolve(self, options: DecodeOptions) -> DecodeOptions:
        """The options with this model's defaults filled in (what results record)."""
        from dataclasses import replace

        return replace(
            options,
            beam_size=options.beam_size or self.default_beam_size,
            max_new_tokens=options.max_new_tokens or self.default_max_new_tokens)

    def describe(self) -> dict[str, Any]:
        """Identity recorded in results (name, source, hash where known)."""
        return {"name": self.name}

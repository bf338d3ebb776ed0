"""The seam every model backend plugs into: named input streams in, hypotheses out.

An item's inputs are named streams (`Inputs`): `audio` (16 kHz mono float32), `video` (lip
crops, 25 fps), `enroll` (the enrollment recording of a verification trial), and more to come.
A model declares the streams it reads (`modalities`) and the tasks it accepts (`tasks`); the
runner checks every item against them before decoding anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from speechkit.audio import SAMPLE_RATE as SAMPLE_RATE  # re-exported for the backends
from speechkit.data import Segment

AUDIO = "audio"  # 16 kHz mono float32 waveform of the item
VIDEO = "video"  # lip crops: float32 [T, 88, 88] at 25 fps, normalized as the model input
ENROLL = "enroll"  # 16 kHz waveform of a verification trial's enrollment recording

Inputs = dict[str, np.ndarray]  # one item's streams, by name: {"audio": ..., "enroll": ...}


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
    # Whisper: P(<|nospeech|>) above which a window with unlikely text is dropped as silence;
    # None = 0.6 (openai-whisper's default), 1 = never (every window's text is kept).
    no_speech_threshold: float | None = None
    # Whisper: prompt each piece of a long file with the text of the piece before (pieces of
    # one file then decode in turn); None = the model's default
    condition_on_previous_text: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hypothesis:
    """One decoded output for one audio input."""

    text: str
    language: str | None = None
    segments: list[Segment] = field(default_factory=list)  # times relative to the input
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. {"p_yes": 0.93}
    error: str | None = None  # this input failed (the rest of the batch did not), and why


class SpeechModel(ABC):
    """A loaded model that turns a batch of inputs (named streams) into hypotheses."""

    name: str = "model"
    max_input_s: float = 30.0  # longer inputs are segmented before they reach the model
    kind: str = "speech"  # what it is, in messages: "whisper-base is a Whisper model"
    modalities: frozenset[str] = frozenset({AUDIO})  # the streams this model reads
    tasks: frozenset[str] = frozenset()  # the tasks it accepts (speechkit task names); empty: any
    default_batch: int | None = None  # its own default --batch-size (None: the runner's, by device)
    # The options that change what this model does; others given by the user are reported
    # as ignored (a warning line), never dropped silently.
    uses: frozenset[str] = frozenset({"device", "batch_size", "beam_size", "max_new_tokens", "threads"})

    @property
    def device(self) -> str:
        return "cpu"

    @classmethod
    def task_for(cls, task: str, target_language: str | None = None) -> str | None:
        """What this model is asked to do for a suite's task (asr, st, sv, ...), or None when
        it cannot do that task."""
        return task if not cls.tasks or task in cls.tasks else None

    def streams(self, task: str) -> frozenset[str]:
        """The streams every item of `task` must have: the enrollment recording only for
        verification trials, and only where the model reads it."""
        need = self.modalities - {ENROLL}
        return need | {ENROLL} if task == "sv" and ENROLL in self.modalities else need

    @abstractmethod
    def generate(
        self, batch: list[Inputs], options: DecodeOptions, prompts: list[str | None] | None = None,
        languages: list[str | None] | None = None,
    ) -> list[Hypothesis]:
        """Decode a batch; one hypothesis per input, in input order (a hypothesis with `error`
        set fails that input only). `languages`: each input's spoken language where the
        caller knows it (None = the options' or detected)."""

    def detect_language(self, batch: list[Inputs]) -> list[str | None]:
        """Each input's spoken language, for models that can tell (None where they cannot)."""
        return [None] * len(batch)

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

    def used_settings(self) -> dict[str, Any]:
        """How the loaded weights actually run: device, dtype, quant (results record these)."""
        return {"device": self.device, "dtype": None, "quant": None}


def audios_of(batch: list[Inputs]) -> list[np.ndarray]:
    """The audio stream of every input of a batch."""
    return [x[AUDIO] for x in batch]


def audio_inputs(audios: list[np.ndarray]) -> list[Inputs]:
    """Inputs holding one audio stream each (a batch of plain waveforms)."""
    return [{AUDIO: a} for a in audios]

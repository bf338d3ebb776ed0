"""The task registry: one frozen record per task, read by prompts, scorers, suites, `compare`,
the preflight checks and Whisper's task mapping.

Adding a task is one record here plus its scorer in `speechkit.evaluation.metrics.scorers`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from speechkit.errors import SpeechkitError


@dataclass(frozen=True)
class Task:
    """What a task is: its names, the prompt a speech LLM gets, how answers are read and scored."""

    name: str
    description: str
    metrics: tuple[str, ...]  # reported for a run with no suite file; the first is primary
    aliases: tuple[str, ...] = ()
    prompt: str | None = None  # SALMONN-style default; {target_language} / {question} filled in
    normalizer: str | None = None  # default text normalizer; None: normalizers do not apply
    yes_no: bool = False  # the answer is yes/no: P("yes") is recorded for an EER
    parser: str | None = None  # "module:function" reading a free-text answer (label, choice)
    modalities: tuple[str, ...] = ("audio",)  # the input streams an item must have
    whisper: str | None = None  # what Whisper is asked to do ("transcribe"/"translate"), if it can

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    def parse_answer(self, text: str, *args: Any) -> Any:
        """The answer read from free text (a label, a choice letter, yes/no); the text itself
        when the task has no parser."""
        if self.parser is None:
            return text
        module, _, fn = self.parser.partition(":")
        return getattr(importlib.import_module(module), fn)(text, *args)


_METRICS = "speechkit.evaluation.metrics"
WER_CER = ("wer", "cer")
CAPTION_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d", "spice",
                   "spider")

# Prompts: SALMONN task prompts (bytedance/SALMONN), translation target filled in.
# Normalizers: LibriSpeech/leaderboards score ASR after the Whisper English normalizer;
# LRS3 (auto_avsr, Llama-AVSR) lowercases only; sacreBLEU scores detokenized raw text.
_RECORDS = (
    Task("asr", "speech recognition", WER_CER, aliases=("transcribe",),
         prompt="Recognize the speech and give me the transcription.", normalizer="whisper-en",
         whisper="transcribe"),
    Task("st", "speech translation", ("bleu", "chrf"), aliases=("translate", "ast", "s2tt"),
         prompt="Listen to the speech and translate it into {target_language}.",
         normalizer="none", whisper="translate"),
    Task("sv", "speaker verification (is the enrollment speaker the test speaker?)",
         ("eer", "mindcf_0.01", "mindcf_0.05", "accuracy"), aliases=("speaker",),
         prompt="Do you only hear the same person talking? Answer yes or no.", yes_no=True,
         parser=f"{_METRICS}.eer:parse_yes_no", modalities=("audio", "enroll")),
    Task("er", "emotion recognition", ("weighted_accuracy", "unweighted_accuracy"),
         aliases=("emotion", "ser"), prompt="Describe the emotion of the speaker in one word.",
         parser=f"{_METRICS}.classification:emotion_label"),
    Task("sqa", "spoken question answering", ("accuracy", "exact_match", "f1"), aliases=("qa",),
         prompt="{question}", parser=f"{_METRICS}.sqa:extract_choice"),
    Task("aac", "audio captioning", CAPTION_METRICS, aliases=("caption", "captioning"),
         prompt="Please describe the audio."),
    Task("vsr", "visual speech recognition (lip reading)", WER_CER, normalizer="lrs3",
         modalities=("video",)),
    Task("avsr", "audio-visual speech recognition", WER_CER, normalizer="lrs3",
         modalities=("audio", "video"), whisper="transcribe"),
)
TASKS: dict[str, Task] = {t.name: t for t in _RECORDS}
_BY_NAME: dict[str, Task] = {n: t for t in _RECORDS for n in (t.name, *t.aliases)}
# What Whisper models do, from the records: ("transcribe", "translate").
WHISPER_TASKS: tuple[str, ...] = tuple(dict.fromkeys(t.whisper for t in _RECORDS if t.whisper))


def find_task(name: str | None) -> Task | None:
    """The task named `name` or one of its aliases (any case), or None."""
    return _BY_NAME.get((name or "").strip().lower())


def get_task(name: str) -> Task:
    """The task named `name` or one of its aliases; an unknown name is a SpeechkitError."""
    task = find_task(name)
    if task is None:
        raise SpeechkitError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return task

"""Whisper through transformers: batched, deterministic transcription and X->English translation."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechkit.data import Segment, Word
from speechkit.errors import SpeechkitError, first_line
from speechkit.models.base import SAMPLE_RATE, DecodeOptions, Hypothesis, Inputs, SpeechModel, audios_of
from speechkit.models.whisper_decode import (
    COMPRESSION_RATIO_THRESHOLD,
    PROMPT_RESET_TEMPERATURE,
    Decoded,
    WhisperTokens,
    last_timestamp,
    missed_speech,
    resume_point,
    split_segments,
)
from speechkit.models.whisper_words import NO_SPACE_LANGUAGES, TimedWord, align_words, fit_word_times
from speechkit.tasks import WHISPER_TASKS, find_task

if TYPE_CHECKING:  # torch is imported when the torch engine loads: the CTranslate2 one runs without it
    import torch

log = logging.getLogger("speechkit")

CHUNK_S = 30.0  # Whisper's fixed input window; longer audio is segmented by the caller
MAX_RESUMES = 4  # times one clip is decoded again from where its decoding stopped early
MIN_RESUME_S = 0.5  # s; a shorter rest of a clip is not decoded again
# s; a VAD piece (speech up to its end) whose text ends this long before the piece does is
# decoded on from there: Whisper sometimes closes a window after its first sentence (a 29 s
# piece gave 2 s of text), and the rest of a piece past a pause is speech, not silence.
UNDECODED_TAIL_S = 1.0


class _DropLengthAdvice(logging.Filter):
    """Whisper's generate sets max_length itself; transformers then warns on every batch."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "seem to have been set" not in record.getMessage()


logging.getLogger("transformers.generation.utils").addFilter(_DropLengthAdvice())


class WhisperModel(SpeechModel):
    """A transformers `WhisperForConditionalGeneration` with its processor (the torch engine);
    the decoding flow here is shared with the CTranslate2 engine, which imports no torch."""

    max_input_s = CHUNK_S
    default_max_new_tokens = 224  # half the decoder context, as openai-whisper
    kind = "Whisper"
    tasks = frozenset(WHISPER_TASKS)
    uses = SpeechModel.uses | {"dtype", "language", "word_timestamps", "engine", "no_speech_threshold",
                               "condition_on_previous_text"}
    # Off: on three 3.5-min recordings of clips joined with pauses (benchmarks/transcribe.py
    # --long 210), prompting each piece with the one before made Whisper skip whole sentences
    # (greedy WER 8.0 % against 6.5 %) and decodes a file's pieces one after another.
    default_condition_on_previous_text = False

    def __init__(self, source: str | Path, name: str | None = None, device: str = "cpu",
                 dtype: str = "float32", int8: bool = False, describe: dict[str, Any] | None = None):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from speechkit.models.safe_load import pretrained, refuse_non_finite
        from speechkit.models.whisper_torch import WhisperDecoder

        self.name = name or str(source)
        self._device = device
        self.dtype = getattr(torch, dtype)
        try:
            self.processor = pretrained(WhisperProcessor, source)
            self.model = pretrained(WhisperForConditionalGeneration, source, dtype=self.dtype,
                                    attn_implementation="sdpa")
        except OSError as e:
            raise SpeechkitError(f"cannot load Whisper model from {source}: {first_line(e)}; pass a "
                                 "local transformers directory or a built-in name "
                                 "(see `speechkit models`)") from None
        if not str((describe or {}).get("source", "")).startswith("builtin:"):  # those are pinned
            refuse_non_finite(dict(self.model.named_parameters()), source)
        self.model.to(device).eval()
        if int8:
            self.model = quantize_int8(self.model)
        gc = self.model.generation_config
        self.multilingual = bool(getattr(gc, "is_multilingual", False))
        self.decoder = WhisperDecoder(self.model, self.processor.tokenizer, WhisperTokens.from_model(
            gc, self.processor.tokenizer, self.model.config.vocab_size))
        self._describe = {"name": self.name, "family": "whisper", "source": str(source),
                          **(describe or {}), "engine": "torch",
                          "dtype": "int8" if int8 else dtype}
        if device == "cpu":
            self._describe["threads"] = torch.get_num_threads()
        if int8:  # dynamic int8 changes the output: resume and merges keep it apart
            self._describe["quant"] = "int8"

    @property
    def device(self) -> str:
        return self._device

    @classmethod
    def task_for(cls, task: str, target_language: str | None = None) -> str | None:
        """Suite tasks as Whisper's: speech recognition (also an audio-visual suite's audio
        track) is `transcribe`; translation only into English is `translate`."""
        if task == "st" and target_language != "en":
            return None
        if task in WHISPER_TASKS:
            return task
        found = find_task(task)
        return found.whisper if found else None

    def describe(self) -> dict[str, Any]:
        return dict(self._describe)

    def resolve(self, options: DecodeOptions) -> DecodeOptions:
        """The defaults filled in, conditioning on previous text included (results record it)."""
        from dataclasses import replace

        options = super().resolve(options)
        if options.condition_on_previous_text is None:
            options = replace(options, condition_on_previous_text=self.default_condition_on_previous_text)
        return options

    def text_ids(self, text: str) -> list[int]:
        """The token ids of a previous piece's text, as openai-whisper encodes a prompt."""
        return self.processor.tokenizer.encode(" " + text.strip(), add_special_tokens=False)

    def used_settings(self) -> dict[str, Any]:
        return {"device": self._device, "dtype": self._describe["dtype"],
                "quant": self._describe.get("quant"), "engine": self._describe["engine"],
                "threads": self._describe.get("threads")}

    def features(self, audios: list[np.ndarray]) -> torch.Tensor:
        """Log-mel features of each clip, padded to 30 s with zeros in the feature domain.

        Each clip's spectrogram is computed and normalized on its own samples only, then
        zero-padded to 3,000 frames (as faster-whisper does), rather than computed over
        audio padded with digital silence: the latter measured 2.5 WER points worse on short
        clips. Per-clip, so an item's features never depend on its batch.
        """
        import torch

        fe = self.processor.feature_extractor
        out = np.zeros((len(audios), fe.feature_size, fe.nb_max_frames), dtype=np.float32)
        for i, a in enumerate(audios):
            a = np.asarray(a, dtype=np.float32)[:fe.n_samples]
            if len(a) < fe.hop_length * 2:
                a = np.pad(a, (0, fe.hop_length * 2 - len(a)))
            f = fe(a, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="np")
            f = f.input_features[0]
            n = min(f.shape[1], fe.nb_max_frames)
            out[i, :, :n] = f[:, :n]
        return torch.from_numpy(out)

    def _check(self, options: DecodeOptions) -> None:
        if options.task not in WHISPER_TASKS:
            raise SpeechkitError(f"Whisper models do --task transcribe or translate, not "
                                 f"{options.task!r}; use a speech-LLM checkpoint for other tasks")
        if not self.multilingual and (options.task == "translate" or
                                      options.language not in (None, "en", "english")):
            raise SpeechkitError(f"{self.name} is English-only: it cannot {options.task} "
                                 f"{options.language or ''} speech; use whisper-base")

    def _encode(self, audios: list[np.ndarray]) -> torch.Tensor:
        """Encoder output of each clip (its first 30 s)."""
        import torch

        with torch.inference_mode():
            return self.decoder.encode(self.features(audios).to(self._device, dtype=self.dtype))

    def detect_language(self, batch: list[Inputs]) -> list[str | None]:
        """The spoken language of each clip (from its first 30 s); None for English-only models."""
        audios = audios_of(batch)
        if not self.multilingual or not audios:
            return [None] * len(audios)
        return [lang for lang, _ in self.decoder.detect_language(self._encode(audios))]

    def generate(self, batch: list[Inputs], options: DecodeOptions,
                 prompts: list[str | None] | None = None,
                 languages: list[str | None] | None = None,
                 previous: list[str | None] | None = None,
                 speech_to_end: list[bool] | None = None,
                 speech: list[list[tuple[float, float]] | None] | None = None) -> list[Hypothesis]:
        """Decode each clip (at most 30 s) with timestamps and openai-whisper's fallback.

        `languages` gives a clip's language when the caller knows it (e.g. detected once for
        a long file); otherwise `options.language`, otherwise it is detected from the clip.
        `previous`: the text of the piece before each clip (a long file's pieces), which the
        clip's prompt then carries after <|startofprev|>. `speech_to_end`: the clips that
        are VAD pieces, holding speech up to their end (see UNDECODED_TAIL_S). `speech`: a VAD
        piece's speech regions (s from its start); one its segments jumped over is decoded on
        its own (`missed_speech`).
        """
        options = self.resolve(options)
        self._check(options)
        audios = audios_of(batch)
        if not audios:
            return []
        enc = self._encode(audios)
        langs = [(languages[i] if languages else None) or options.language for i in range(len(audios))]
        if not self.multilingual:
            langs = ["en"] * len(audios)
        unknown = [i for i, lang in enumerate(langs) if lang is None]
        if unknown:
            for i, (lang, _) in zip(unknown, self.decoder.detect_language(enc[unknown]), strict=True):
                langs[i] = lang
        before = [self.text_ids(t) if t and t.strip() else [] for t in previous or [None] * len(audios)]
        prompted = list(before)  # _decode_windows extends `before` with text when conditioning
        windows = self._decode_windows(enc, audios, langs, options, before,
                                       speech_to_end or [False] * len(audios))
        if speech and any(speech):
            self._decode_missed(audios, langs, options, prompted, speech, windows)
        return [self._hypothesis(parts, lang, a, options)
                for parts, lang, a in zip(windows, langs, audios, strict=True)]

    def _decode_windows(self, enc: torch.Tensor, audios: list[np.ndarray], langs: list[str],
                        options: DecodeOptions, before: list[list[int]], to_end: list[bool]
                        ) -> list[list[tuple[float, Decoded, float]]]:
        """Decode each clip, prompted with the token ids `before` it; a clip whose decoding
        stopped before its end (see `resume_point`; a VAD piece: see UNDECODED_TAIL_S) is
        decoded again from there, prompted with its text so far too when conditioning (none
        after text decoded hot). Returns (offset s, decoding, end s) parts per clip."""
        tok = self.decoder.tok
        parts: list[list[tuple[float, Decoded, float]]] = [[] for _ in audios]
        todo = [(i, 0.0) for i in range(len(audios))]
        for _ in range(MAX_RESUMES + 1):
            decoded = self._decode_rows(enc, [i for i, _ in todo], langs, before, options)
            again = []
            for (i, offset), (d, resume) in zip(todo, decoded, strict=True):
                parts[i].append((offset, d, len(audios[i]) / SAMPLE_RATE))
                left_s = len(audios[i]) / SAMPLE_RATE - offset
                if resume is None and to_end[i] and not d.is_silence() \
                        and (end := last_timestamp(d.tokens, tok.timestamp_begin)) is not None \
                        and end < left_s - UNDECODED_TAIL_S:
                    resume = end  # closed early: the rest of the VAD piece is decoded too
                if resume is not None and MIN_RESUME_S < resume < left_s - MIN_RESUME_S:
                    again.append((i, offset + resume))
                    if options.condition_on_previous_text:  # hot text prompts nothing
                        before[i] = ([] if d.temperature > PROMPT_RESET_TEMPERATURE
                                     else before[i] + [t for t in d.tokens if t < tok.eot])
            if not again:
                break
            todo = again
            clips = [audios[i][int(round(off * SAMPLE_RATE)):] for i, off in todo]
            enc = self._encode(clips)
        return parts

    def _decode_rows(self, enc: Any, rows: list[int], langs: list[str], before: list[list[int]],
                     options: DecodeOptions) -> list[tuple[Decoded, float | None]]:
        """Decode each row of `enc`, the clip `rows[k]`, prompted with its language and the
        token ids `before` it: each decoding cut at its resume point (`resume_point`), and
        the resume time or None."""
        tok = self.decoder.tok
        prompts = [tok.conditioned(before[i], tok.prompt(langs[i], options.task)) for i in rows]
        out = []
        for k, d in enumerate(self.decoder.decode(enc, prompts, options.beam_size,
                                                  options.max_new_tokens)):
            d.tokens, resume = resume_point(d.tokens, tok.timestamp_begin)
            if options.word_timestamps:
                d.states = enc[k]  # the word-timing pass reuses this window's encoding
            out.append((d, resume))
        return out

    def _decode_missed(self, audios: list[np.ndarray], langs: list[str], options: DecodeOptions,
                       before: list[list[int]], speech: list[list[tuple[float, float]] | None],
                       parts: list[list[tuple[float, Decoded, float]]]) -> None:
        """Decode on its own each stretch of a VAD piece's speech that its segments jumped
        over (`missed_speech`), prompted as the piece was; adds (start, decoding, end) parts.
        A piece judged silence is left as it is."""
        tok = self.decoder.tok
        todo = []
        for i, regions in enumerate(speech):
            if not regions or any(d.is_silence(options.no_speech_threshold) for _, d, _ in parts[i]):
                continue
            covered = [(off + s, off + e) for off, d, end in parts[i]
                       for s, e, _ in split_segments(d.tokens, tok.timestamp_begin, end - off)]
            todo += [(i, s, e) for s, e in missed_speech(covered, regions)[:MAX_RESUMES]]
        if not todo:
            return
        clips = [audios[i][int(round(s * SAMPLE_RATE)):int(round(e * SAMPLE_RATE))] for i, s, e in todo]
        decoded = self._decode_rows(self._encode(clips), [i for i, _, _ in todo], langs, before, options)
        for (i, s, e), (d, _) in zip(todo, decoded, strict=True):
            parts[i].append((s, d, e))

    def _hypothesis(self, parts: list[tuple[float, Decoded, float]], language: str,
                    audio: np.ndarray, options: DecodeOptions) -> Hypothesis:
        """One clip's result from its parts (offset s, decoding, end s): the window, the rests
        decoded on from a resume point, then any missed speech (`_decode_missed`), whose
        segments go in among the others by time."""
        tok = self.processor.tokenizer
        tb = self.decoder.tok.timestamp_begin
        duration_s = len(audio) / SAMPLE_RATE
        segments: list[Segment] = []
        texts, warnings = [], []
        for offset, d, end in parts:
            if d.is_silence(options.no_speech_threshold):
                continue
            found = [(s, e, ids, text) for s, e, ids in split_segments(d.tokens, tb, end - offset)
                     if (text := tok.decode(ids).strip())]
            words = self._words(d, end, offset, language, options, found)
            for k, (s, e, _, text) in enumerate(found):
                segments.append(Segment(s, e, text, words[k] if words else None
                                        ).shifted(offset, duration_s))
            texts.append(tok.decode([t for t in d.tokens if t < tb]).strip())
            if d.compression_ratio > COMPRESSION_RATIO_THRESHOLD:
                warnings.append(f"repetition loop: compression ratio {d.compression_ratio:.2f} "
                                f"even at temperature {d.temperature}")
            elif d.truncated:
                warnings.append("stopped at --max-new-tokens before the end of the window")
        text = " ".join(t for t in texts if t)
        if any(end < duration_s and not d.is_silence(options.no_speech_threshold)
               for _, d, end in parts):  # missed speech went in between
            segments.sort(key=lambda seg: seg.start)
            text = ("" if language in NO_SPACE_LANGUAGES else " ").join(seg.text for seg in segments)
        if options.word_timestamps:
            segments = fit_word_times(segments)
        first = parts[0][1]
        extras: dict[str, Any] = {"avg_logprob": round(first.avg_logprob, 4),
                                  "compression_ratio": round(first.compression_ratio, 3),
                                  "no_speech_prob": round(first.no_speech_prob, 4),
                                  "temperature": max(d.temperature for _, d, _ in parts)}
        if all(d.is_silence(options.no_speech_threshold) for _, d, _ in parts):
            extras["no_speech"] = True
        if warnings:
            extras["warning"] = "; ".join(warnings)
        return Hypothesis(text=text, language=language, segments=segments, extras=extras)

    def _words(self, d: Decoded, duration_s: float, offset: float, language: str,
               options: DecodeOptions, found: list[tuple[float, float, list[int], str]]
               ) -> list[list[Word]] | None:
        """Each segment's words with times relative to the window as aligned: one attention
        pass over the encoder output kept with the decoding (`d.states`); `_hypothesis` fits
        them to the segments (`fit_word_times`)."""
        if not options.word_timestamps or not found:
            return None
        timed = self._align(d.states, self.decoder.tok.prompt(language, options.task),
                            [t for _, _, ids, _ in found for t in ids], duration_s - offset, language)
        out: list[list[Word]] = []
        it = iter(timed)
        for _, _, ids, _ in found:  # hand the words back to their segments, in order
            seg, n = [], 0
            while n < len(ids) and (w := next(it, None)) is not None:
                seg.append(Word(w.word.strip(), w.start, w.end, w.probability))
                n += w.tokens
            out.append(seg)
        return out

    def _align(self, states: Any, prompt: list[int], text_tokens: list[int], clip_s: float,
               language: str) -> list[TimedWord]:
        """Times of the words of one window's text, from its encoder output."""
        tok = self.decoder.tok
        return align_words(self.model, self.processor.tokenizer, states, prompt, tok.no_timestamps,
                           tok.eot, text_tokens, clip_s, language)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every Linear layer (CPU): weights int8, activations float."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates the quantized tensor constructors
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)

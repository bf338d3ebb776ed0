"""Whisper on CPU through CTranslate2: the built-in weights run in their own format, int8.

The same decoding rules as the torch engine (whisper.py, whisper_decode.py): one encoder pass
per window serves language detection and every fallback temperature; greedy or beam search
with timestamps at temperature 0, then `BEST_OF` samples at each higher temperature while
the text is a repetition loop or unlikely; a window that is probably silence keeps no text;
a window whose decoding stopped early is decoded again from there. CTranslate2 applies
openai-whisper's timestamp rules itself.

Batches run on several model replicas at once (CTranslate2's `inter_threads`, the weights
shared): the windows of a batch are encoded in parallel and its rows decoded in parallel
slices, each replica on one core. Small Whisper matrices do not spread over threads, but
independent windows do: on a 2-core CPU, 15 short clips took 13 s on two one-thread replicas
against 27 s on one and 16-18 s on one two-thread replica.

Fallback sampling runs one clip at a time on a replica of its own, created for that clip:
CTranslate2 seeds a thread's random generator once, at its first draw, so a long-lived
replica would give a clip different samples depending on what it sampled before. A fresh
one, seeded with the fixed seed, gives the same text in any batch, order or rerun. The main
model's weights are unloaded meanwhile and read again after (about 0.1 s for base int8):
one copy of the weights is in memory at a time.

Neither torch nor transformers is imported: features (whisper_mel.py) and text
(whisper_tokenizer.py) are computed without them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechkit.audio import SAMPLE_RATE
from speechkit.errors import SpeechkitError
from speechkit.heap import loading_weights
from speechkit.models.base import DecodeOptions, Hypothesis, Inputs, audios_of
from speechkit.models.whisper import WhisperModel
from speechkit.models.whisper_decode import (
    BEST_OF,
    MAX_INITIAL_TIMESTAMP_INDEX,
    SAMPLING_SEED,
    TEMPERATURES,
    Decoded,
    WhisperTokens,
    compression_ratio,
)
from speechkit.models.whisper_mel import HOP_LENGTH, N_FRAMES, window_features
from speechkit.models.whisper_tokenizer import WhisperTokenizer
from speechkit.models.whisper_words import MEDIAN_FILTER_WIDTH, TimedWord, split_words, timed_words

CT2_COMPUTE_TYPES = ("int8", "float32")  # CPU compute types offered (int8: weights int8)
DEFAULT_COMPUTE_TYPE = "int8"  # as faster-whisper on CPU; --dtype float32 for float32
MAX_TARGET_POSITIONS = 448  # decoder context in tokens, every Whisper size
HELD_ENCODINGS = 16  # first pieces held between language detection and decoding (3 MB each, base)
WINDOW_STEP_S = 10  # encoder windows are 10, 20 or 30 s long (see `encoder_frames`)
MIN_TAIL_S = 1.0  # s of padding a short window keeps after its clip
UNLOAD_WAIT_S = 1.0  # longest wait for CTranslate2 to count the last batch done


def whisper_tokens(config: dict, tokenizer: WhisperTokenizer, vocab_size: int,
                   multilingual: bool = True) -> WhisperTokens:
    """The special token ids, from a CTranslate2 Whisper dir's config.json and tokenizer.

    An English-only model is prompted with <|startoftranscript|> alone (openai-whisper): its
    config.json still lists `lang_ids`, shifted by one and without <|en|>, so they are not read.
    """
    tid = tokenizer.token_id
    langs = ({tokenizer.token(i).strip("<|>"): i for i in config.get("lang_ids", [])}
             if multilingual else {})
    tasks = {"transcribe": tid("<|transcribe|>"), "translate": tid("<|translate|>")} if langs else {}
    no_ts = tid("<|notimestamps|>")
    return WhisperTokens(
        eot=tid("<|endoftext|>"), sot=tid("<|startoftranscript|>"), no_timestamps=no_ts,
        timestamp_begin=no_ts + 1, no_speech=tid("<|nospeech|>") or tid("<|nocaptions|>"),
        tasks=tasks, languages=langs, suppress=tuple(config.get("suppress_ids", ())),
        vocab_size=vocab_size, sot_prev=tid("<|startofprev|>"))


@dataclass(frozen=True)
class _Processor:
    """The part of a `WhisperProcessor` that decoding uses (features: `Ct2WhisperModel.features`)."""

    tokenizer: WhisperTokenizer


class Ct2Decoder:
    """`WhisperDecoder`'s interface over a `ctranslate2.models.Whisper`: encoder outputs are
    float32 arrays (clips, frames, width), so windows can be picked and kept like tensors.
    `sampler()` makes the fresh one-replica model that samples one clip's fallback."""

    def __init__(self, model: Any, tokenizer: Any, tokens: WhisperTokens, sampler: Callable[[], Any]):
        self.model = model
        self.tokenizer = tokenizer
        self.tok = tokens
        self.sampler = sampler
        self.replicas = max(1, int(model.num_workers))
        self._pool = ThreadPoolExecutor(self.replicas, "ct2") if self.replicas > 1 else None
        special = range(tokens.eot + 1, tokens.timestamp_begin)  # SOT, languages, tasks, ...
        self._suppress = sorted({*tokens.suppress, *special})  # as the torch engine suppresses

    def _map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> list[Any]:
        """`fn` over `jobs`, on every replica at once (CTranslate2 releases the GIL)."""
        return list(self._pool.map(fn, jobs)) if self._pool else [fn(j) for j in jobs]

    def encode(self, features: np.ndarray) -> np.ndarray:
        """Encoder outputs of a batch of log-mel windows, one window per pass, the passes
        spread over the replicas: the attention scores of 8 windows at once took 600 MB more
        peak memory and no less CPU time (whisper-base, 2-core CPU)."""
        rows = self._map(lambda i: np.asarray(self.model.encode(self._view(features[i:i + 1]))),
                         range(len(features)))
        return np.concatenate(rows) if rows else np.zeros((0, 0, 0), dtype=np.float32)

    def _view(self, enc: np.ndarray) -> Any:
        import ctranslate2

        return ctranslate2.StorageView.from_array(np.ascontiguousarray(enc, dtype=np.float32))

    def detect_language(self, enc: np.ndarray) -> list[tuple[str, float]]:
        """(language code, probability) per row."""
        return [(pairs[0][0].strip("<|>"), pairs[0][1])
                for pairs in self.model.detect_language(self._view(enc))]

    def decode(self, enc: np.ndarray, prompts: list[list[int]], beam_size: int,
               max_new_tokens: int, temperatures: tuple[float, ...] = TEMPERATURES) -> list[Decoded]:
        """Decode every row at temperature 0 in one batch; rows failing the checks are
        sampled again, hotter, one row at a time."""
        limits = [self.tok.max_new(p, max_new_tokens, MAX_TARGET_POSITIONS) for p in prompts]
        out = self._search(enc, prompts, limits, beam_size)
        failed = [i for i, d in enumerate(out) if d.needs_fallback()] if len(temperatures) > 1 else []
        if failed:
            self._unload()  # one copy of the weights in memory: the sampler's while it samples
            try:
                for i in failed:
                    out[i] = self._resample(enc[i:i + 1], prompts[i], limits[i], out[i],
                                            temperatures[1:])
            finally:
                if not self.model.model_is_loaded:
                    with loading_weights():
                        self.model.load_model()
        return out

    def _unload(self) -> None:
        """Unload the main model's weights. CTranslate2 skips an unload while it counts a batch
        as active, and that count lags a returned result by a moment: wait for it (at most
        `UNLOAD_WAIT_S`; after that the weights stay, which costs memory, not results)."""
        deadline = time.monotonic() + UNLOAD_WAIT_S
        while time.monotonic() < deadline:
            if self.model.num_active_batches == 0:
                self.model.unload_model()
                if not self.model.model_is_loaded:
                    return
            time.sleep(0.001)

    def _search(self, enc: np.ndarray, prompts: list[list[int]], limits: list[int],
                beam_size: int) -> list[Decoded]:
        """Temperature 0 (greedy or beam search): the rows in one slice per replica, all at
        once. CTranslate2 takes prompts of one length a call, so rows prompted with previous
        text of different lengths go in slices of their own."""
        groups: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(len(p), []).append(i)
        k = self.replicas
        jobs = [rows[n * j // k:n * (j + 1) // k] for rows in groups.values() if (n := len(rows))
                for j in range(k) if n * j // k < n * (j + 1) // k]
        parts = self._map(lambda rows: self._generate(
            self.model, enc[rows], [prompts[i] for i in rows], min(limits[i] for i in rows),
            beam_size), jobs)
        out: list[Decoded] = [None] * len(prompts)  # type: ignore[list-item]
        for rows, part in zip(jobs, parts, strict=True):
            for i, d in zip(rows, part, strict=True):
                out[i] = d
        return out

    def _resample(self, enc: np.ndarray, prompt: list[int], max_new: int, d: Decoded,
                  temperatures: tuple[float, ...]) -> Decoded:
        """Sample one clip at each temperature in turn until its text passes the checks, on a
        replica made for it (its generator seeded at its first draw)."""
        import ctranslate2

        ctranslate2.set_random_seed(SAMPLING_SEED)
        model = self.sampler()
        for temperature in temperatures:
            if not d.needs_fallback():
                break
            d = self._generate(model, enc, [prompt], max_new, temperature=temperature)[0]
        return d

    def _generate(self, model: Any, enc: np.ndarray, prompts: list[list[int]], max_new: int,
                  beam_size: int = 1, temperature: float = 0.0) -> list[Decoded]:
        """Decode the rows on `model` at one temperature: search at 0, `BEST_OF` samples above."""
        if temperature == 0.0:
            kwargs: dict[str, Any] = {"beam_size": beam_size, "patience": 1}
        else:
            kwargs = {"beam_size": 1, "num_hypotheses": BEST_OF, "sampling_topk": 0,
                      "sampling_temperature": temperature}
        # CTranslate2 decodes min(max_length / 2, max_length - prompt) new tokens (openai-whisper's
        # half context at its default 448): this max_length gives exactly `max_new`.
        max_length = max(2 * max_new, max_new + len(prompts[0]))
        results = model.generate(
            self._view(enc), prompts, max_length=max_length, return_scores=True,
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=self._suppress,
            max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX, **kwargs)
        out = []
        for r in results:
            # Scores are length-normalized log-probabilities; the best candidate comes first.
            best = max(range(len(r.sequences_ids)), key=lambda k: r.scores[k])
            tokens = list(r.sequences_ids[best])
            text = self.tokenizer.decode([t for t in tokens if t < self.tok.eot])
            out.append(Decoded(tokens=tokens,
                               avg_logprob=r.scores[best] * len(tokens) / (len(tokens) + 1),
                               compression_ratio=compression_ratio(text),
                               no_speech_prob=r.no_speech_prob, temperature=temperature,
                               truncated=len(tokens) >= max_new))
        return out


class Ct2WhisperModel(WhisperModel):
    """A built-in Whisper run by CTranslate2 on CPU (its weights' own format)."""

    @property
    def default_batch(self) -> int:  # type: ignore[override]
        """Two windows per one-thread replica; 8 on one replica with more threads. Measured on
        a 2-core CPU: with one thread, batches of 1, 2 and 8 took the same CPU time on 15
        short clips and 8 held 850 MB RSS against 550 MB; with two threads a 184 s file's
        pieces decoded in 6 s in batches of 8 against 11-16 s in batches of 2 (small
        matrices do not spread over threads)."""
        return 8 if self.replicas == 1 and self.threads > 1 else 2 * self.replicas

    @property
    def replicas(self) -> int:
        """Model replicas run side by side (CTranslate2's `inter_threads`)."""
        return self.decoder.replicas

    def used_settings(self) -> dict[str, Any]:
        return {**super().used_settings(), "replicas": self.replicas}

    def __init__(self, directory: str | Path, name: str, compute_type: str = DEFAULT_COMPUTE_TYPE,
                 threads: int = 1, describe: dict[str, Any] | None = None, replicas: int | None = None,
                 short_windows: bool = True):
        import ctranslate2

        if compute_type not in CT2_COMPUTE_TYPES:
            raise SpeechkitError(f"--dtype {compute_type} is not offered by the ctranslate2 engine; "
                                 f"use one of {', '.join(CT2_COMPUTE_TYPES)}, or --engine torch")
        directory = Path(directory)
        self.name = name
        self._device = "cpu"
        self.dtype = None
        inter = max(1, min(threads, replicas or threads))  # default: one replica per thread
        intra = max(1, threads // inter)

        def load(inter: int) -> Any:
            with loading_weights():
                return ctranslate2.models.Whisper(str(directory), device="cpu",
                                                  compute_type=compute_type,
                                                  inter_threads=inter, intra_threads=intra)

        self.model = load(inter)
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        vocab = sum(1 for _ in (directory / "vocabulary.txt").open(encoding="utf-8"))
        tokenizer = WhisperTokenizer(directory / "tokenizer.json", vocab)
        self.processor = _Processor(tokenizer)  # transformers' WhisperProcessor: 2 s to import
        self.multilingual = self.model.is_multilingual
        tokens = whisper_tokens(config, tokenizer, vocab, self.multilingual)
        self.decoder = Ct2Decoder(self.model, tokenizer, tokens, sampler=lambda: load(1))
        self._held: dict[tuple[int, bytes], np.ndarray] = {}  # content key -> encoder output
        self._describe = {"name": name, "family": "whisper", "source": str(directory),
                          **(describe or {}), "engine": "ctranslate2", "dtype": compute_type,
                          "threads": threads, "replicas": inter}
        self.threads = threads
        self.short_windows = short_windows
        self._frames: int | None = None  # the encoder window of the clips being decoded
        self._describe["encoder_window"] = "short" if short_windows else "30s"
        if compute_type == "int8":  # int8 changes the output: resume and merges keep it apart
            self._describe["quant"] = "int8"

    def _encode(self, audios: list[np.ndarray]) -> np.ndarray:
        """Encoder outputs, one row per audio. A long file's first piece is encoded once: its
        language is detected on it (`detect_language` holds the row) and then it is decoded."""
        if not self._held:  # the common case: nothing held, nothing to hash
            return self.decoder.encode(self.features(audios))
        rows = [self._held.pop(_content_key(a), None) for a in audios]
        todo = [i for i, r in enumerate(rows) if r is None]
        if todo:
            fresh = self.decoder.encode(self.features([audios[i] for i in todo]))
            for i, row in zip(todo, fresh, strict=True):
                rows[i] = row
        return np.stack(rows)  # type: ignore[arg-type]

    def text_ids(self, text: str) -> list[int]:
        return self.processor.tokenizer.encode(" " + text.strip())

    def features(self, audios: list[np.ndarray]) -> np.ndarray:  # type: ignore[override]
        """The torch engine's features (per clip, zero-padded to 30 s), computed in numpy, cut
        to the encoder window of the clips being decoded (`encoder_frames`)."""
        frames = self._frames or max((encoder_frames(len(a), self.short_windows) for a in audios),
                                     default=N_FRAMES)
        return np.ascontiguousarray(window_features(audios, self.model.n_mels)[:, :, :frames])

    def _by_window(self, batch: list[Inputs], run: Callable[[list[int]], list[Any]]) -> list[Any]:
        """`run(rows)` on the rows of `batch` that share an encoder window length, one window
        length at a time (CTranslate2 decodes a batch of one length), results in batch order."""
        groups: dict[int, list[int]] = {}
        for i, audio in enumerate(audios_of(batch)):
            groups.setdefault(encoder_frames(len(audio), self.short_windows), []).append(i)
        out: list[Any] = [None] * len(batch)
        for frames, rows in sorted(groups.items()):
            self._frames = frames  # a resumed window's remainder keeps its clip's length
            try:
                for i, r in zip(rows, run(rows), strict=True):
                    out[i] = r
            finally:
                self._frames = None
        return out

    def generate(self, batch: list[Inputs], options: DecodeOptions,
                 prompts: list[str | None] | None = None,
                 languages: list[str | None] | None = None,
                 previous: list[str | None] | None = None,
                 speech_to_end: list[bool] | None = None,
                 speech: list[list[tuple[float, float]] | None] | None = None) -> list[Hypothesis]:
        def pick(values: list | None, rows: list[int]) -> list | None:
            return None if values is None else [values[i] for i in rows]

        return self._by_window(batch, lambda rows: super(Ct2WhisperModel, self).generate(
            [batch[i] for i in rows], options, pick(prompts, rows), pick(languages, rows),
            pick(previous, rows), pick(speech_to_end, rows), pick(speech, rows)))

    def _align(self, states: np.ndarray, prompt: list[int], text_tokens: list[int], clip_s: float,
               language: str) -> list[TimedWord]:
        """Word times from CTranslate2's alignment (the same heads, filter and DTW as the
        torch engine's `align_words`)."""
        words = split_words(self.processor.tokenizer, text_tokens, language)
        if not words:
            return []
        mel_frames = max(2, min(N_FRAMES, int(round(clip_s * SAMPLE_RATE / HOP_LENGTH))))
        found = self.model.align(self.decoder._view(states[None]), prompt, [text_tokens], mel_frames,
                                 median_filter_width=MEDIAN_FILTER_WIDTH)[0]
        path = np.array(found.alignments, dtype=np.int64).reshape(-1, 2)
        return timed_words(words, path[:, 0], path[:, 1], list(found.text_token_probs))

    def detect_language(self, batch: list[Inputs]) -> list[str | None]:
        return self._by_window(batch, lambda rows: self._detect([batch[i] for i in rows]))

    def _detect(self, batch: list[Inputs]) -> list[str | None]:
        audios = audios_of(batch)
        if not self.multilingual or not audios:
            return [None] * len(audios)
        enc = self._encode(audios)
        for audio, row in zip(audios, enc, strict=True):  # decoded next: kept until then
            self._held[_content_key(audio)] = row
        while len(self._held) > HELD_ENCODINGS:
            self._held.pop(next(iter(self._held)))
        return [lang for lang, _ in self.decoder.detect_language(enc)]


def encoder_frames(samples: int, short_windows: bool = True) -> int:
    """Log-mel frames the encoder reads for a clip of `samples`: the clip plus at least
    MIN_TAIL_S of padding, rounded up to a multiple of WINDOW_STEP_S, at most Whisper's 30 s.

    Whisper pads every clip to 30 s, so a 3 s clip costs the encoder (and every decoder step's
    cross-attention) ten times its length. CTranslate2 takes shorter windows; on 35 short real
    and generated English clips (benchmarks/clipsets.py), 10 s windows gave the same WER or
    lower (all sets: 18.5 % at 30 s, 15.4 % at 10 s; German and French detected as before)
    with 3.4x less CPU, while 5 s windows broke down into loops (124 %). The length depends
    on the clip alone, so its text does not depend on its batch."""
    if not short_windows:
        return N_FRAMES
    seconds = samples / SAMPLE_RATE + MIN_TAIL_S
    steps = int(np.ceil(seconds / WINDOW_STEP_S))
    return min(N_FRAMES, steps * WINDOW_STEP_S * SAMPLE_RATE // HOP_LENGTH)


def _content_key(audio: np.ndarray) -> tuple[int, bytes]:
    """Identifies a waveform by its content (length and a 128-bit digest)."""
    return len(audio), hashlib.blake2b(np.ascontiguousarray(audio).tobytes(), digest_size=16).digest()

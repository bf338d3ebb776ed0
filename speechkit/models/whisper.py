"""Whisper through transformers: batched, deterministic transcription and X->English translation."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechkit.errors import SpeechkitError
from speechkit.models.base import SAMPLE_RATE, DecodeOptions, Hypothesis, SpeechModel

log = logging.getLogger("speechkit")

CHUNK_S = 30.0  # Whisper's fixed input window; longer audio is segmented by the caller
MAX_TARGET_TOKENS = 448  # decoder context of every Whisper size
WHISPER_TASKS = ("transcribe", "translate")


class _DropLengthAdvice(logging.Filter):
    """Whisper's generate sets max_length itself; transformers then warns on every batch."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "seem to have been set" not in record.getMessage()


logging.getLogger("transformers.generation.utils").addFilter(_DropLengthAdvice())


class WhisperModel(SpeechModel):
    """A transformers `WhisperForConditionalGeneration` with its processor."""

    max_input_s = CHUNK_S
    default_max_new_tokens = 224  # half the decoder context, as openai-whisper

    def __init__(self, source: str | Path, name: str | None = None, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, int8: bool = False,
                 describe: dict[str, Any] | None = None):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from speechkit.models.safe_load import pretrained

        self.name = name or str(source)
        self._device = device
        self.dtype = dtype
        try:
            self.processor = pretrained(WhisperProcessor, source)
            self.model = pretrained(WhisperForConditionalGeneration, source, dtype=dtype,
                                    attn_implementation="sdpa")
        except OSError as e:
            raise SpeechkitError(f"cannot load Whisper model from {source}: {_first_line(e)}; pass a "
                                 "local transformers directory or a built-in name "
                                 "(see `speechkit models`)") from None
        self.model.to(device).eval()
        if int8:
            self.model = quantize_int8(self.model)
        gc = self.model.generation_config
        self.multilingual = bool(getattr(gc, "is_multilingual", False))
        self._lang_by_token = {v: k.strip("<|>") for k, v in (getattr(gc, "lang_to_id", None) or {}).items()}
        self._describe = {"name": self.name, "family": "whisper", "source": str(source),
                          **(describe or {})}

    @property
    def device(self) -> str:
        return self._device

    def describe(self) -> dict[str, Any]:
        return dict(self._describe)

    def features(self, audios: list[np.ndarray]) -> torch.Tensor:
        """Log-mel features of each clip, padded to 30 s with zeros in the feature domain.

        Each clip's spectrogram is computed and normalized on its own samples only, then
        zero-padded to 3,000 frames (as faster-whisper does), rather than computed over
        audio padded with digital silence: the latter measured 2.5 WER points worse on short
        clips. Per-clip, so an item's features never depend on its batch.
        """
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

    @torch.inference_mode()
    def generate(self, audios: list[np.ndarray], options: DecodeOptions,
                 prompts: list[str | None] | None = None) -> list[Hypothesis]:
        options = self.resolve(options)
        self._check(options)
        if not audios:
            return []
        feats = self.features(audios).to(self._device, dtype=self.dtype)
        kwargs: dict[str, Any] = {
            "num_beams": options.beam_size,
            "do_sample": False,
            "max_new_tokens": min(options.max_new_tokens, MAX_TARGET_TOKENS - 4),
            # Decode with timestamp tokens, as openai-whisper and faster-whisper do by default:
            # on short clips it is the more accurate mode (the text keeps no timestamps).
            "return_timestamps": True,
        }
        languages: list[str] = ["en"] * len(audios)
        inputs: dict[str, Any] = {"input_features": feats}
        if self.multilingual:
            kwargs["task"] = options.task
            if options.language:
                languages = [options.language] * len(audios)
            else:
                # Encode once, detect each item's language from the first decoder step,
                # then decode from the same encoder states with the detected languages.
                enc = self.model.get_encoder()(feats)
                ids = self.model.detect_language(encoder_outputs=enc).view(-1).tolist()
                languages = [self._lang_by_token.get(i, "en") for i in ids]
                inputs = {"encoder_outputs": enc}
            kwargs["language"] = languages
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # length and attention-mask advisories from generate
            seqs = self.model.generate(**inputs, **kwargs)
        if not isinstance(seqs, torch.Tensor):
            seqs = seqs.sequences
        tok = self.processor.tokenizer
        return [Hypothesis(text=tok.decode(row, skip_special_tokens=True).strip(), language=lang)
                for row, lang in zip(seqs.tolist(), languages, strict=True)]


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every Linear layer (CPU): weights int8, activations float."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates the quantized tensor constructors
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]

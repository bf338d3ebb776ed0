"""Speaker-embedding models for verification: audio in, one unit-length vector out.

`resemblyzer` is the built-in baseline: Resemblyzer's 256-d LSTM d-vector (GE2E), whose
weights ship inside its PyPI wheel (Apache-2.0). A trial's score is the cosine of the two
embeddings; EER and minDCF come from those scores.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.hashing import file_sha256
from speechkit.models.base import SAMPLE_RATE, DecodeOptions, Hypothesis, SpeechModel
from speechkit.models.catalogue import RESEMBLYZER_INSTALL
from speechkit.models.safe_load import load_plain_pickle

INSTALL_HINT = RESEMBLYZER_INSTALL


class SpeakerEmbedder(SpeechModel):
    """A model that embeds speakers; it verifies trials and does not generate text."""

    tasks = ("sv",)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def generate(self, audios: list[np.ndarray], options: DecodeOptions,
                 prompts: list[str | None] | None = None,
                 languages: list[str | None] | None = None) -> list[Hypothesis]:
        raise SpeechkitError(f"{self.name} is a speaker-embedding model: it scores speaker-"
                             "verification trials (speechkit bench voxceleb1-o --model "
                             f"{self.name}), it does not transcribe")


class ResemblyzerModel(SpeakerEmbedder):
    """Resemblyzer's VoiceEncoder: volume-normalized, VAD-trimmed audio -> 256-d d-vector."""

    name = "resemblyzer"

    def __init__(self) -> None:
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as e:
            raise SpeechkitError(f"resemblyzer cannot be imported ({e}); install it: "
                                 f"{INSTALL_HINT}") from None
        import resemblyzer

        weights = Path(resemblyzer.__file__).with_name("pretrained.pt")
        if not weights.is_file():
            raise SpeechkitError(f"resemblyzer's weights are missing ({weights}); reinstall: "
                                 f"{INSTALL_HINT}")
        load_plain_pickle(weights)  # refuse pickled code before resemblyzer's own torch.load
        self._preprocess = preprocess_wav
        self.encoder = VoiceEncoder("cpu", verbose=False, weights_fpath=weights)
        self._describe = {
            "name": self.name, "family": "speaker-embedding", "source": "builtin:resemblyzer",
            "version": importlib.metadata.version("resemblyzer"),
            "sha256": file_sha256(weights), "license": "Apache-2.0",
            "score": "cosine of 256-d d-vectors"}

    def describe(self) -> dict[str, Any]:
        return dict(self._describe)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        wav = self._preprocess(np.asarray(audio, dtype=np.float32), source_sr=SAMPLE_RATE)
        if wav.size < SAMPLE_RATE // 4:  # VAD trimming left (almost) nothing
            raise SpeechkitError("no speech left after voice-activity trimming")
        e = self.encoder.embed_utterance(wav)
        return e / max(float(np.linalg.norm(e)), 1e-9)

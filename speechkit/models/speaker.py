"""Speaker-embedding models for verification: a trial (audio + enroll) in, a score out.

`resemblyzer` is the built-in baseline: Resemblyzer's 256-d LSTM d-vector (GE2E), whose
weights ship inside its PyPI wheel (Apache-2.0). A trial's score is the cosine of the two
recordings' embeddings (`extras.score`); EER and minDCF come from those scores. Each
recording is embedded once however many trials use it (a cache keyed by its samples).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.hashing import file_sha256
from speechkit.models.base import AUDIO, ENROLL, SAMPLE_RATE, DecodeOptions, Hypothesis, Inputs, SpeechModel
from speechkit.models.catalogue import RESEMBLYZER_INSTALL
from speechkit.models.safe_load import load_plain_pickle

INSTALL_HINT = RESEMBLYZER_INSTALL


class SpeakerEmbedder(SpeechModel):
    """A model that embeds speakers: it scores verification trials and does not generate text."""

    kind = "speaker-embedding"
    modalities = frozenset({AUDIO, ENROLL})
    tasks = frozenset({"sv"})
    uses = frozenset({"batch_size", "threads"})
    max_input_s = float("inf")  # a recording is embedded whole, never cut into windows

    def __init__(self) -> None:
        self._cache: dict[bytes, np.ndarray | str] = {}  # samples digest -> embedding or error

    def embed(self, audio: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def generate(self, batch: list[Inputs], options: DecodeOptions,
                 prompts: list[str | None] | None = None,
                 languages: list[str | None] | None = None) -> list[Hypothesis]:
        """Each trial's cosine score as `extras.score`; a recording that cannot be embedded
        fails its trials only."""
        out = []
        for x in batch:
            enroll, test = self._embedding(x[ENROLL]), self._embedding(x[AUDIO])
            bad = [f"{what} recording: {e}" for what, e in (("enrollment", enroll), ("test", test))
                   if isinstance(e, str)]
            if bad:
                out.append(Hypothesis("", error="; ".join(bad)))
            else:
                out.append(Hypothesis("", extras={"score": round(float(np.dot(enroll, test)), 6)}))
        return out

    def _embedding(self, audio: np.ndarray) -> np.ndarray | str:
        key = hashlib.blake2b(np.ascontiguousarray(audio).tobytes(), digest_size=16).digest()
        if key not in self._cache:
            try:
                self._cache[key] = self.embed(audio)
            except SpeechkitError as e:
                self._cache[key] = str(e)
        return self._cache[key]


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
        super().__init__()
        self._preprocess = preprocess_wav
        self.encoder = VoiceEncoder("cpu", verbose=False, weights_fpath=weights)
        self._describe = {
            "name": self.name, "family": "speaker-embedding", "source": "builtin:resemblyzer",
            "version": importlib.metadata.version("resemblyzer"),
            "sha256": file_sha256(weights), "license": "Apache-2.0",
            "score": "cosine of 256-d d-vectors"}

    def describe(self) -> dict[str, Any]:
        return dict(self._describe)

    def used_settings(self) -> dict[str, Any]:
        return {"device": "cpu", "dtype": "float32", "quant": None}  # VoiceEncoder("cpu"), fp32

    def embed(self, audio: np.ndarray) -> np.ndarray:
        wav = self._preprocess(np.asarray(audio, dtype=np.float32), source_sr=SAMPLE_RATE)
        if wav.size < SAMPLE_RATE // 4:  # VAD trimming left (almost) nothing
            raise SpeechkitError("no speech left after voice-activity trimming")
        e = self.encoder.embed_utterance(wav)
        return e / max(float(np.linalg.norm(e)), 1e-9)

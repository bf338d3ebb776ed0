"""What a `--model` argument is, without loading it: its identity, decode defaults and reach.

Resume needs this before any weights load: a rerun whose items are all done with the same
model and settings must not pay for loading the model, and results written by another model
must be refused before decoding starts. The identity holds the same keys the loaded model's
`describe()` records (name, family or type, source, sha256, quant), computed the same way:
the pinned sha256 of a built-in, the content hash of a local directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from speechkit.errors import SpeechkitError
from speechkit.hashing import MODEL_SUFFIXES, dir_sha256, file_sha256
from speechkit.models.base import DecodeOptions, SpeechModel
from speechkit.models.registry import (
    RuntimeOptions,
    ct2_compute_type,
    load_model,
    resolve_device,
    whisper_engine,
)


@dataclass
class ModelCard:
    """A model known by identity; `load()` brings in the weights when there is work to do."""

    name: str
    identity: dict[str, Any]
    family: str  # whisper | speechllm | speaker-embedding
    default_beam_size: int = 1
    default_max_new_tokens: int = 200
    default_condition_on_previous_text: bool | None = None  # Whisper's; None for the others
    modalities: tuple[str, ...] = ("audio",)  # the streams it reads (speech LLMs: its encoders')
    tasks: tuple[str, ...] = ()
    local: bool = False  # a directory on this machine
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    model: SpeechModel | None = None  # set once loaded

    def resolve(self, options: DecodeOptions) -> DecodeOptions:
        """The options with the model's defaults filled in, as its `resolve` does."""
        if self.model is not None:
            return self.model.resolve(options)
        condition = options.condition_on_previous_text
        return replace(options, beam_size=options.beam_size or self.default_beam_size,
                       max_new_tokens=options.max_new_tokens or self.default_max_new_tokens,
                       condition_on_previous_text=self.default_condition_on_previous_text
                       if condition is None else condition)

    def describe(self) -> dict[str, Any]:
        """The loaded model's full record, else the identity."""
        return self.model.describe() if self.model is not None else dict(self.identity)

    def load(self) -> SpeechModel:
        """Load the weights (once); files that changed since the identity was taken are refused."""
        if self.model is None:
            from speechkit.results import same_model

            model = load_model(self.name, self.runtime)
            loaded = model.describe()
            if self.identity.get("sha256") and not same_model(loaded, self.identity):
                raise SpeechkitError(
                    f"{self.name}: its files changed while speechkit read them (sha256 "
                    f"{self.identity.get('sha256')} before loading, {loaded.get('sha256')} after); "
                    "rerun once they are complete")
            self.model = model
        return self.model

    @property
    def slug(self) -> str:
        """A folder-safe name: a local directory's own name, else the name with / as _."""
        name = Path(self.name).name if self.local else self.name
        return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def model_card(model: str | SpeechModel | ModelCard,
               runtime: RuntimeOptions = RuntimeOptions()) -> ModelCard:
    """The card of a `--model` argument (a built-in name, a directory or a hub id), or of a
    model already loaded. Reads config and hashes files; loads no weights."""
    if isinstance(model, ModelCard):
        return model
    if isinstance(model, SpeechModel):
        d = model.describe()
        defaults = model.resolve(DecodeOptions())
        return ModelCard(model.name, d, d.get("family") or d.get("type") or "model",
                         default_beam_size=defaults.beam_size,
                         default_max_new_tokens=defaults.max_new_tokens,
                         default_condition_on_previous_text=defaults.condition_on_previous_text,
                         modalities=tuple(getattr(model, "modalities", ("audio",))),
                         tasks=tuple(getattr(model, "tasks", ())),
                         local=Path(model.name).expanduser().is_dir(), runtime=runtime, model=model)
    return _card_of_name(str(model), runtime)


def _card_of_name(name: str, runtime: RuntimeOptions) -> ModelCard:
    from speechkit.models.catalogue import CATALOGUE
    from speechkit.models.whisper import WhisperModel

    whisper = {"default_max_new_tokens": WhisperModel.default_max_new_tokens, "runtime": runtime,
               "default_condition_on_previous_text": WhisperModel.default_condition_on_previous_text}
    int8 = {"quant": "int8"} if runtime.dtype == "int8" else {}  # as WhisperModel records it
    entry = CATALOGUE.get(name)
    if entry is not None and entry.kind == "speaker-embedding":
        return ModelCard(name, _speaker_identity(name), "speaker-embedding", tasks=("sv",),
                         runtime=runtime)
    if entry is not None and entry.kind == "whisper":
        engine = whisper_engine(name, runtime, resolve_device(runtime.device))
        if engine == "ctranslate2" and ct2_compute_type(runtime) == "int8":
            int8 = {"quant": "int8"}  # as Ct2WhisperModel records it
        window = {"encoder_window": runtime.encoder_window} if engine == "ctranslate2" else {}
        return ModelCard(name, {"name": name, "family": "whisper", "source": f"builtin:{name}",
                                "sha256": entry.sha256, "engine": engine, **int8, **window},
                         "whisper", **whisper)
    path = Path(name).expanduser()
    if path.is_dir():
        from speechkit.models.registry import _is_whisper_dir
        from speechkit.models.speechllm import is_speechllm_checkpoint

        if is_speechllm_checkpoint(path):
            return _speechllm_card(name, path, runtime)
        if _is_whisper_dir(path):
            return ModelCard(name, {"name": name, "family": "whisper", "source": str(path),
                                    "sha256": dir_sha256(path, MODEL_SUFFIXES), **int8},
                             "whisper", local=True, **whisper)
        from speechkit.models.hf_audio import family_of

        if family_of(path) is not None:
            return _hf_audio_card(name, path, runtime)
    elif "/" in name and not name.startswith((".", "/", "~")) and not path.exists():
        return ModelCard(name, {"name": name, "family": "whisper", "source": f"hub:{name}", **int8},
                         "whisper", **whisper)
    load_model(name, runtime)  # anything else: the loader says what is wrong with it
    raise SpeechkitError(f"{name}: not a model speechkit can identify; pass a built-in name, "
                         "a checkpoint or Whisper directory, or a hub id")


def _speechllm_card(name: str, path: Path, runtime: RuntimeOptions) -> ModelCard:
    from speechkit.models.registry import resolve_device
    from speechkit.models.speechllm import read_spec
    from speechkit.models.speechllm.llm import default_quant
    from speechkit.models.speechllm.lora_scale import lora_scaling, scaled_lora
    from speechkit.models.speechllm.sources import anchor_sources, checkpoint_sha256, part_directories

    spec = anchor_sources(read_spec(path), path)
    quant = runtime.quant or default_quant(resolve_device(runtime.device))
    sha256, _ = checkpoint_sha256(path, part_directories(spec))  # as load_speechllm hashes it
    identity = {"name": name, "type": "speechllm", "sha256": sha256, "quant": quant,
                "lora_scaling": lora_scaling(scaled_lora(spec.llm.lora, runtime.lora_scale, name))}
    return ModelCard(name, identity, "speechllm", default_beam_size=spec.decode.beam_size,
                     default_max_new_tokens=spec.decode.max_new_tokens, local=True,
                     modalities=tuple(sorted({e.stream for e in spec.encoders})), runtime=runtime)


def _hf_audio_card(name: str, path: Path, runtime: RuntimeOptions) -> ModelCard:
    """An audio-text-to-text directory's identity, as `AudioTextModel.describe` records it."""
    from speechkit.models.hf_audio import family_of
    from speechkit.models.hf_audio.loading import chosen_quant
    from speechkit.models.hf_audio.model import AudioTextModel

    family = family_of(path)
    assert family is not None
    quant = chosen_quant(runtime.quant, runtime.dtype, resolve_device(runtime.device))
    identity = {"name": name, "type": "hf-audio", "family": family.model_type,
                "sha256": dir_sha256(path, MODEL_SUFFIXES), "quant": quant}
    return ModelCard(name, identity, "hf-audio", local=True, runtime=runtime,
                     modalities=tuple(sorted(AudioTextModel.modalities)), tasks=family.tasks)


def _speaker_identity(name: str) -> dict[str, Any]:
    """A speaker model's weights ship inside its package: hash them where the package lies."""
    from speechkit.models.catalogue import builtin

    identity: dict[str, Any] = {"name": name, "family": "speaker-embedding",
                                "source": f"builtin:{name}"}
    try:
        (weights,) = builtin(name).weight_files()
    except SpeechkitError:
        return identity  # not installed: loading it says how to install it
    identity["sha256"] = file_sha256(weights)
    return identity

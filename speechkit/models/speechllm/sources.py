"""Resolve a component source (built-in name, local dir, hub id) and read its weights safely."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from speechkit.errors import SpeechkitError
from speechkit.hashing import MODEL_SUFFIXES, TOKENIZER_SUFFIXES, dir_sha256
from speechkit.models.safe_load import bad_safetensors, hub_snapshot, load_weights, refuse_custom_code
from speechkit.models.speechllm.checkpoint import SPEC_FILE, CheckpointSpec

RANDOM = "random"  # a source built from its `config` with seeded random weights


def builtin_encoders() -> dict[str, Callable[[], Path]]:
    """Built-in encoder names -> a function returning their transformers directory."""
    from speechkit.models.catalogue import CATALOGUE, names

    return {name: CATALOGUE[name].load for name in names("whisper")}


def builtin_llms() -> dict[str, Callable[[], Path]]:
    """Built-in LLM names -> a function returning their transformers directory."""
    from speechkit.models.catalogue import CATALOGUE, names

    return {name: CATALOGUE[name].load for name in names("llm")}


def resolve_source(source: str, builtins: dict[str, Callable[[], Path]], what: str) -> Path:
    """A checked local directory for `source`: built-in (converted once), local dir, or hub
    download; one whose configs ask for the model's own Python code is refused."""
    if source in builtins:
        directory = builtins[source]()
    elif (path := Path(source).expanduser()).is_dir():
        directory = path
    elif path.exists():
        raise SpeechkitError(f"{what} source {source}: a file; pass the model's directory")
    elif not _hub_id(source):
        raise SpeechkitError(f"{what} source {source!r} is neither a built-in name "
                             f"({', '.join(sorted(builtins)) or 'none'}), a local directory "
                             "nor a hub id (org/name)")
    else:
        return hub_snapshot(source, f"{what} source")
    refuse_custom_code(directory)
    return directory


def _hub_id(source: str) -> bool:
    return "/" in source and not source.startswith((".", "/", "~"))


def anchor_sources(spec: CheckpointSpec, root: Path) -> CheckpointSpec:
    """The spec with relative directory sources made absolute against the checkpoint
    directory, so what loads never depends on the working directory."""
    keep = set(builtin_encoders()) | set(builtin_llms()) | {RANDOM}

    def anchor(source: str | None) -> str | None:
        if source is None or source in keep:
            return source
        path = Path(source).expanduser()
        if path.is_absolute():
            return str(path)
        local = root / path
        if _hub_id(source) and not local.is_dir():
            return source  # org/name
        return str(local.resolve())

    return replace(spec, encoders=[replace(e, source=anchor(e.source)) for e in spec.encoders],
                   llm=replace(spec.llm, source=anchor(spec.llm.source),
                               tokenizer=anchor(spec.llm.tokenizer)))


def part_directories(spec: CheckpointSpec) -> dict[str, Path]:
    """Every component directory a checkpoint uses (key in speechkit.json -> directory),
    each resolved and checked for custom code before any of them loads."""
    parts: dict[str, Path] = {}
    for i, enc in enumerate(spec.encoders):
        if enc.source != RANDOM:
            parts[f"encoders[{i}].source"] = resolve_source(enc.source, builtin_encoders(),
                                                            "encoder")
    if spec.llm.source != RANDOM:
        parts["llm.source"] = resolve_source(spec.llm.source, builtin_llms(), "LLM")
    if spec.llm.tokenizer and spec.llm.tokenizer != spec.llm.source:
        parts["llm.tokenizer"] = resolve_source(spec.llm.tokenizer, builtin_llms(), "tokenizer")
    return parts


def checkpoint_sha256(root: Path, parts: dict[str, Path]) -> tuple[str, dict[str, str]]:
    """One sha256 over the checkpoint directory and every component directory it uses,
    plus the digest of each part, so a change to any file that was loaded shows."""
    digests = {"checkpoint": dir_sha256(root)}
    for key, directory in parts.items():
        if directory.resolve().is_relative_to(root.resolve()):
            continue  # a part inside the checkpoint (a converted one's): hashed with it already
        suffixes = TOKENIZER_SUFFIXES if key == "llm.tokenizer" else MODEL_SUFFIXES
        digests[key] = dir_sha256(directory, suffixes, recursive=False)
    joined = json.dumps(digests, sort_keys=True).encode("utf-8")
    return hashlib.sha256(joined).hexdigest(), digests


def random_config(config: dict[str, Any] | None, default_type: str, key: str) -> Any:
    """The transformers config a "random" source is built from; a bad one names its key."""
    from transformers import CONFIG_MAPPING

    cfg = dict(config or {})
    model_type = cfg.pop("model_type", default_type)
    if model_type not in CONFIG_MAPPING:
        raise SpeechkitError(f"{SPEC_FILE}: {key}.model_type {model_type!r} is not a transformers "
                             "architecture; use one such as llama or whisper")
    try:
        return CONFIG_MAPPING[model_type](**cfg)
    except (TypeError, ValueError) as e:
        raise SpeechkitError(f"{SPEC_FILE}: {key} is not a valid {model_type} config "
                             f"({str(e).splitlines()[0]}); fix that value") from None


def read_state_dict(directory: Path, prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Tensors under the first matching key prefix (stripped), from safetensors files only.

    `pytorch_model.bin` is read with weights_only=True; nothing pickled ever runs.
    """
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        bins = sorted(directory.glob("pytorch_model*.bin"))
        if not bins:
            raise SpeechkitError(f"{directory}: no *.safetensors (or pytorch_model.bin) weights")
        full: dict[str, torch.Tensor] = {}
        for b in bins:
            full.update(load_weights(b))
        return _strip(full, prefixes)
    keys: dict[str, Path] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as h:
                keys.update(dict.fromkeys(h.keys(), f))
        except Exception as e:  # SafetensorError: a damaged file or a pickle
            raise bad_safetensors(f, e) from None
    for prefix in prefixes:
        wanted = [k for k in keys if k.startswith(prefix)]
        if wanted:
            out: dict[str, torch.Tensor] = {}
            for f in files:
                with safe_open(str(f), framework="pt") as h:
                    for k in wanted:
                        if keys[k] == f:
                            out[k[len(prefix):]] = h.get_tensor(k)
            return out
    raise SpeechkitError(f"{directory}: no weights under any of {list(prefixes)}")


def _strip(state: dict[str, torch.Tensor], prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    for prefix in prefixes:
        out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if out:
            return out
    raise SpeechkitError(f"no weights under any of {list(prefixes)}")

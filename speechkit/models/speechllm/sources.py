"""Resolve a component source (built-in name, local dir, hub id) and read its weights safely."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors import safe_open

from speechkit.errors import SpeechkitError

HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]


def builtin_encoders() -> dict[str, Callable[[], Path]]:
    """Built-in encoder names -> a function returning their transformers directory."""
    from speechkit.models.whisper_ct2 import BUILTIN_WHISPER, ensure_whisper

    return {name: (lambda n=name: ensure_whisper(n)) for name in BUILTIN_WHISPER}


def builtin_llms() -> dict[str, Callable[[], Path]]:
    """Built-in LLM names -> a function returning their transformers directory."""
    from speechkit.models.speechllm.smollm2 import NAME, ensure_smollm2

    return {NAME: ensure_smollm2}


def resolve_source(source: str, builtins: dict[str, Callable[[], Path]], what: str) -> Path:
    """A local directory for `source`: built-in (converted once), local dir, or hub download."""
    if source in builtins:
        return builtins[source]()
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise SpeechkitError(f"{what} source {source}: a file; pass the model's directory")
    if "/" not in source or source.startswith((".", "/", "~")):
        raise SpeechkitError(f"{what} source {source!r} is neither a built-in name "
                             f"({', '.join(sorted(builtins)) or 'none'}), a local directory "
                             "nor a hub id (org/name)")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise SpeechkitError(f"{what} source {source}: the model hub is switched off "
                             "(HF_HUB_OFFLINE=1); download it and pass its local directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=HUB_FILES))
    except Exception as e:
        raise SpeechkitError(f"{what} source {source}: could not fetch it from the model hub "
                             f"({type(e).__name__}); download it and pass its local "
                             "directory") from None


def read_state_dict(directory: Path, prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Tensors under the first matching key prefix (stripped), from safetensors files only.

    `pytorch_model.bin` is read with weights_only=True; nothing pickled ever runs.
    """
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        bins = sorted(directory.glob("pytorch_model*.bin"))
        if not bins:
            raise SpeechkitError(f"{directory}: no *.safetensors (or pytorch_model.bin) weights")
        from speechkit.models.speechllm.checkpoint import load_weights

        full: dict[str, torch.Tensor] = {}
        for b in bins:
            full.update(load_weights(b))
        return _strip(full, prefixes)
    keys: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            keys.update(dict.fromkeys(h.keys(), f))
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

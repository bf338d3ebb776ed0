"""Load model files without running foreign code.

Every model directory passes `refuse_custom_code` before anything is read from it, every
transformers load goes through `pretrained` (local files only, remote code off), and tensors
come from safetensors or torch's weights-only unpickler. Nothing here ever reads stdin, so
no load can stop at transformers' "run the custom code? [y/N]" question.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from speechkit.errors import SpeechkitError, first_line

# The files transformers and peft read a class or module name from (transformers'
# CONFIG_NAME, TOKENIZER_CONFIG_FILE, FEATURE_EXTRACTOR_NAME, PROCESSOR_NAME, ...; peft's
# CONFIG_NAME). tokenizer.json is left out: a vocabulary may hold the word "auto_map".
CONFIG_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json",
                "processor_config.json", "video_preprocessor_config.json",
                "audio_tokenizer_config.json", "generation_config.json", "adapter_config.json")
CODE_KEYS = ("auto_map", "custom_pipelines", "auto_mapping")  # each names Python to import
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]  # no *.py
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive around its pickle


def refuse_custom_code(directory: str | Path) -> None:
    """Refuse a model directory whose configs ask for code shipped with the model."""
    directory = Path(directory)
    for name in CONFIG_FILES:
        file = directory / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise SpeechkitError(f"{file}: not a readable JSON file ({first_line(e, 200)}); "
                                 "re-download or re-export the model") from None
        found = _code_reference(data)
        if found is not None:
            key, value = found
            raise SpeechkitError(
                f"{file}: key {key!r} asks to run the model's own Python code "
                f"({_modules(value)}); speechkit never runs code shipped with a model: use a "
                f"model of a transformers architecture, or delete {key!r} if it is one")


def _code_reference(data: Any, path: str = "") -> tuple[str, Any] | None:
    """The first code-naming key (dotted path) with a non-empty value, at any depth."""
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if key in CODE_KEYS and value:
                return where, value
            found = _code_reference(value, where)
            if found is not None:
                return found
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found = _code_reference(value, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _modules(value: Any) -> str:
    """The Python files a code reference points at: "module.Class" -> module.py."""
    refs: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str) and "." in v:
            repo, _, ref = v.rpartition("--")
            module = ref.rsplit(".", 1)[0].replace(".", "/") + ".py"
            refs.append(f"{module} from {repo}" if repo else module)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    return ", ".join(dict.fromkeys(refs)) or json.dumps(value)[:80]


def pretrained(loader: Any, directory: str | Path, **kwargs: Any) -> Any:
    """`loader.from_pretrained(directory)` on a checked local directory, remote code off."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SpeechkitError(f"{directory}: not a model directory; pass a local directory, a "
                             "built-in name or a hub id")
    refuse_custom_code(directory)
    for file in sorted(directory.glob("*.safetensors")):
        check_safetensors(file)  # headers only: a damaged file is named, not a library error
    return loader.from_pretrained(str(directory), trust_remote_code=False,
                                  local_files_only=True, **kwargs)


def hub_snapshot(repo_id: str, what: str) -> Path:
    """Download a hub model's configs, tokenizer and safetensors (never *.py) and check it."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise SpeechkitError(f"{what} {repo_id}: the model hub is switched off "
                             "(HF_HUB_OFFLINE=1); download it and pass its local directory")
    try:
        from huggingface_hub import snapshot_download

        directory = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as e:
        raise SpeechkitError(f"{what} {repo_id}: could not fetch it from the model hub "
                             f"({type(e).__name__}); download it and pass its local "
                             "directory") from None
    refuse_custom_code(directory)
    return directory


def inside(root: str | Path, relative: str, where: str) -> Path:
    """`root/relative` with `..` and symlinks resolved; a path that leaves `root` is refused."""
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise SpeechkitError(f"{where} {relative!r} leads outside the checkpoint directory (to "
                             f"{target}); copy the files into the checkpoint and name them there")
    return target


def load_weights(file: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, or a torch file holding nothing but tensors."""
    file = Path(file)
    if not file.is_file():
        raise SpeechkitError(f"weights file {file} is missing")
    if file.suffix == ".safetensors":
        return read_safetensors(file)
    obj = load_plain_pickle(file)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # SALMONN-style {"model": state_dict, ...}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpeechkitError(f"{file}: not a state dict of tensors; convert it to safetensors")
    return obj


def read_safetensors(file: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of one safetensors file; a damaged file or a pickle is named as such."""
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except Exception as e:  # SafetensorError, OSError, a header that is not JSON
        raise bad_safetensors(file, e) from None


def check_safetensors(file: str | Path) -> None:
    """Read a safetensors header only: a damaged file or a pickle fails here, before loading."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as h:
            h.keys()
    except Exception as e:  # SafetensorError, OSError
        raise bad_safetensors(file, e) from None


def bad_safetensors(file: str | Path, error: BaseException) -> SpeechkitError:
    """The error for a file that safetensors cannot open: a pickle, or damaged."""
    try:
        with open(file, "rb") as fh:
            head = fh.read(4)
    except OSError:
        head = b""
    if _looks_pickled(head):
        return SpeechkitError(f"{file}: a pickled torch file where safetensors belong; speechkit "
                              "does not unpickle it: convert it to safetensors")
    return SpeechkitError(f"{file}: not a valid safetensors file, corrupt or truncated "
                          f"({first_line(error, 200)}); re-export or re-download it")


def _looks_pickled(head: bytes) -> bool:
    """A torch zip archive, or a raw pickle: PROTO 2-5 then an opcode (never 0x00). A
    safetensors file starts with its header length, whose third byte is 0 below 64 KiB."""
    if head.startswith(ZIP_MAGIC):
        return True
    return len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5 and head[2] != 0


def load_plain_pickle(file: str | Path) -> Any:
    """torch.load with the weights-only unpickler; our own message when it refuses."""
    try:
        return torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as e:
        if not isinstance(e, pickle.UnpicklingError) and "weights_only" not in str(e):
            raise SpeechkitError(f"{file}: not a readable torch weights file (corrupt, truncated "
                                 "or another format); convert it to safetensors") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise SpeechkitError(f"{file}: holds pickled Python objects{what} that speechkit will "
                             "not run; convert it to safetensors") from None

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
import stat
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
    try:
        return loader.from_pretrained(str(directory), trust_remote_code=False,
                                      local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as e:  # no config, no model_type, ...
        raise SpeechkitError(f"{directory}: transformers cannot read it ({first_line(e, 200)}); "
                             "pass a transformers model directory (config.json with a "
                             "model_type, its weights and tokenizer)") from None


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


FINITE_CHUNK = 1 << 24  # elements checked at a time: a bounded temporary on large tensors


def check_weights_file(file: str | Path, what: str = "weights file") -> Path:
    """`file` if it is a non-empty regular file; else one line saying what it is instead (a
    folder, a pipe or device that would block or never end, nothing) and what to pass."""
    file = Path(file)
    try:
        st = file.stat()
    except FileNotFoundError:
        raise SpeechkitError(f"{what} {file}: no such file; check the path") from None
    except OSError as e:
        raise SpeechkitError(f"{what} {file}: cannot be read ({e.strerror}); check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise SpeechkitError(f"{what} {file} is a folder; pass the checkpoint file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise SpeechkitError(f"{what} {file} is not a regular file (a pipe, device or socket); "
                             "pass the checkpoint file itself")
    if st.st_size == 0:
        raise SpeechkitError(f"{what} {file} is empty (0 bytes); download or copy it again")
    if not os.access(file, os.R_OK):
        raise SpeechkitError(f"{what} {file}: permission denied; make it readable")
    return file


def non_finite(tensors: dict[str, torch.Tensor]) -> tuple[str, int, int] | None:
    """The first floating tensor holding NaN or an infinity: (name, how many, of how many)."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
            continue
        flat = t.detach().reshape(-1)
        bad = 0
        for start in range(0, flat.numel(), FINITE_CHUNK):
            bad += int((~torch.isfinite(flat[start:start + FINITE_CHUNK])).sum())
        if bad:
            return name, bad, t.numel()
    return None


def refuse_non_finite(tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """Stop on weights holding NaN or infinities (a damaged or diverged checkpoint): decoding
    with them writes "ok" lines of nonsense."""
    found = non_finite(tensors)
    if found is not None:
        name, bad, total = found
        raise SpeechkitError(f"{source}: tensor {name} holds NaN or infinite values ({bad} of "
                             f"{total}); the weights are damaged or diverged: use another "
                             "checkpoint or download it again")


def load_weights(file: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, or a torch file holding nothing but tensors; weights
    holding NaN or infinities are refused, naming the tensor."""
    file = check_weights_file(file)
    if file.suffix == ".safetensors":
        return read_safetensors(file)
    obj = load_plain_pickle(file)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # SALMONN-style {"model": state_dict, ...}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpeechkitError(f"{file}: not a state dict of tensors; convert it to safetensors")
    refuse_non_finite(obj, file)
    return obj


def read_safetensors(file: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of one safetensors file; a damaged file or a pickle is named as such, and
    weights holding NaN or infinities are refused."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(check_weights_file(file)))
    except SpeechkitError:
        raise
    except Exception as e:  # SafetensorError, OSError, a header that is not JSON
        raise bad_safetensors(file, e) from None
    refuse_non_finite(tensors, file)
    return tensors


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


def _looks_text(file: str | Path) -> bool:
    with open(file, "rb") as fh:
        head = fh.read(4096)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start > len(head) - 4  # only a character cut at the end of the sample
    return b"\x00" not in head


def _looks_safetensors(file: str | Path) -> bool:
    """An 8-byte little-endian header length, then a JSON object."""
    with open(file, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 27


def load_plain_pickle(file: str | Path) -> Any:
    """torch.load with the weights-only unpickler; our own message when it refuses. A file
    that is no pickle at all (text, safetensors, an archive of another kind) is named as such."""
    with open(check_weights_file(file), "rb") as fh:
        head = fh.read(4)
    if not _looks_pickled(head):
        kind = ("a safetensors file" if _looks_safetensors(file) else
                "text" if _looks_text(file) else "no torch file")
        raise SpeechkitError(f"{file}: {kind}, not a torch weights file (torch.save writes a "
                             "zip archive or a pickle); pass the released checkpoint file")
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

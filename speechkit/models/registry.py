"""Resolve a `--model` argument to a loaded SpeechModel: built-in name, local dir or hub id."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechkit.errors import SpeechkitError
from speechkit.hashing import MODEL_SUFFIXES, dir_sha256
from speechkit.models.base import SpeechModel
from speechkit.threads import apply_torch_threads, resolve_threads

DEFAULT_MODEL = "whisper-base"
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}  # --dtype -> torch's name for it
# Device files of a GPU driver torch could use (NVIDIA, WSL's GPU bridge, AMD ROCm, Jetson):
# with none of them there is no CUDA device, known without importing torch (2 s).
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd", "/dev/nvhost-ctrl-gpu")


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how a model runs."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16 | int8 (CPU, Whisper)
    quant: str | None = None  # speech LLMs: 4bit | 8bit | bf16 | fp32 (None = per-device default)
    engine: str = "auto"  # Whisper: auto | torch | ctranslate2 (see whisper_engine)
    threads: int | None = None  # CPU math threads; None = $SPEECHKIT_THREADS or by the machine
    replicas: int | None = None  # CTranslate2: model replicas run side by side; None = one per thread
    encoder_window: str = "short"  # CTranslate2: short (per clip, 10 s steps) | 30s (Whisper's)
    lora_gate: str | None = None  # prompt-aware LoRA (WavLLM): prompt | off | a number; None = prompt
    lora_scale: float | None = None  # speech LLMs: LoRA scaling override (None = trained)


ENGINES = ("auto", "torch", "ctranslate2")
ENCODER_WINDOWS = ("short", "30s")
DTYPE_NAMES = ("auto", *DTYPES, "int8")  # int8: CPU dynamic quantization of Whisper


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise SpeechkitError(f"unknown --engine {engine!r}; use one of {', '.join(ENGINES)}")
    return engine


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPE_NAMES:
        raise SpeechkitError(f"unknown --dtype {dtype!r}; use one of {', '.join(DTYPE_NAMES)}")
    return dtype


def whisper_engine(name: str, runtime: RuntimeOptions, device: str) -> str:
    """The engine that runs a Whisper model. auto: CTranslate2 for a built-in on CPU (its
    weights' own format; the same librivox-mini WER as torch, with less CPU time and memory in
    benchmarks/transcribe.py), torch on GPUs and for transformers directories."""
    from speechkit.models.catalogue import names

    check_engine(runtime.engine)
    fits = name in names("whisper") and device == "cpu" and runtime.dtype in ("auto", "int8", "float32")
    if runtime.engine == "auto":
        return "ctranslate2" if fits else "torch"
    if runtime.engine == "ctranslate2" and not fits:
        raise SpeechkitError(f"--engine ctranslate2 runs the built-in Whisper models on CPU with "
                             f"--dtype int8 or float32 (asked: {name} on {device}, --dtype "
                             f"{runtime.dtype}); use --engine torch")
    return runtime.engine


def cuda_available() -> bool:
    """torch.cuda.is_available(), asked only where a GPU driver may be: a CPU-only machine
    answers without importing torch."""
    if "torch" not in sys.modules and not _gpu_driver_present():
        return False
    import torch

    return torch.cuda.is_available()


def _gpu_driver_present() -> bool:
    if sys.platform == "darwin":  # torch has no CUDA builds for macOS
        return False
    if not sys.platform.startswith("linux"):
        return True  # no cheap sign elsewhere: ask torch
    return any(Path(f).exists() for f in GPU_DEVICE_FILES)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise SpeechkitError("--device cuda was asked for but no CUDA GPU is visible; "
                             "use --device cpu (or auto)")
    if device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise SpeechkitError(f"unknown --device {device!r}; use auto, cpu or cuda")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """The torch dtype's name (float32, float16, bfloat16) a --dtype means on `device`."""
    check_dtype(dtype)
    if dtype == "int8":
        if not device.startswith("cpu"):
            raise SpeechkitError("--dtype int8 is the CPU dynamic quantization; on a GPU use "
                                 "--dtype float16 (Whisper) or --quant 4bit (speech LLMs)")
        return "float32"
    if dtype == "auto":
        return "float16" if device.startswith("cuda") else "float32"
    return DTYPES[dtype]


def builtin_models() -> dict[str, str]:
    """Built-in names `--model` takes and a one-line description of each."""
    from speechkit.models.catalogue import CATALOGUE, MODEL_KINDS

    return {name: e.description for name, e in CATALOGUE.items() if e.kind in MODEL_KINDS}


def _is_whisper_dir(path: Path) -> bool:
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return cfg.get("model_type") == "whisper"


def load_model(name: str = DEFAULT_MODEL, runtime: RuntimeOptions = RuntimeOptions()) -> SpeechModel:
    """Load a built-in model, a speechkit checkpoint dir, a Whisper dir or a hub id."""
    from speechkit.models.catalogue import CATALOGUE, MODEL_KINDS
    from speechkit.models.whisper import WhisperModel

    device = resolve_device(runtime.device)
    dtype = resolve_dtype(runtime.dtype, device)
    int8 = runtime.dtype == "int8"
    entry = CATALOGUE.get(name)
    whisper = entry is not None and entry.kind == "whisper"
    describe = ({"source": f"builtin:{name}", "sha256": entry.sha256, "license": entry.license}
                if whisper else None)
    if whisper and whisper_engine(name, runtime, device) == "ctranslate2":
        from speechkit.models.builtins import ct2_int8_dir, ct2_model_dir
        from speechkit.models.whisper_ctranslate2 import Ct2WhisperModel

        compute_type = ct2_compute_type(runtime)
        folder = ct2_int8_dir(name) if compute_type == "int8" else ct2_model_dir(name)
        return Ct2WhisperModel(folder, name, compute_type=compute_type,
                               threads=resolve_threads(runtime.threads),
                               replicas=runtime.replicas, describe=describe,
                               short_windows=runtime.encoder_window == "short")
    if device == "cpu":
        apply_torch_threads(resolve_threads(runtime.threads))
    if entry is not None and entry.kind in MODEL_KINDS:
        if not whisper:
            return entry.load()
        return WhisperModel(entry.load(), name=name, device=device, dtype=dtype, int8=int8,
                            describe=describe)
    path = Path(name).expanduser()
    if path.is_dir():
        return _load_directory(name, path, runtime, device, dtype)
    if path.exists():
        raise SpeechkitError(f"{name}: a model is a directory, not a file; pass its folder")
    if "/" in name and not name.startswith((".", "/", "~")):
        from speechkit.models.safe_load import hub_snapshot

        directory = hub_snapshot(name, "model")  # configs and safetensors only, never code
        if not _is_whisper_dir(directory):
            raise SpeechkitError(f"{name}: not a Whisper model on the hub (config.json "
                                 "model_type); pass a Whisper id or a speechkit checkpoint dir")
        return WhisperModel(directory, name=name, device=device, dtype=dtype, int8=int8,
                            describe={"source": f"hub:{name}",
                                      "sha256": dir_sha256(directory, MODEL_SUFFIXES)})
    choices = ", ".join(builtin_models())
    raise SpeechkitError(f"unknown model {name!r}: use a built-in name ({choices}), a local "
                         "directory or a hub id like openai/whisper-small")


def _load_directory(name: str, path: Path, runtime: RuntimeOptions, device: str,
                    dtype: Any) -> SpeechModel:
    """A speechkit checkpoint, a transformers Whisper directory or an audio-text-to-text model."""
    from speechkit.models.speechllm import is_speechllm_checkpoint, load_speechllm
    from speechkit.models.whisper import WhisperModel

    if is_speechllm_checkpoint(path):
        return load_speechllm(str(path), device=device, quant=runtime.quant,
                              dtype=None if runtime.dtype == "auto" else runtime.dtype,
                              lora_scale=runtime.lora_scale, lora_gate=runtime.lora_gate)
    if _is_whisper_dir(path):
        return WhisperModel(path, name=str(path), device=device, dtype=dtype,
                            int8=runtime.dtype == "int8",
                            describe={"sha256": dir_sha256(path, MODEL_SUFFIXES)})
    from speechkit.models.hf_audio import family_of, load_hf_audio, not_yet

    if family_of(path) is not None:
        return load_hf_audio(name, device=device, quant=runtime.quant, dtype=runtime.dtype)
    not_yet(path)
    raise SpeechkitError(f"{name}: neither a speechkit checkpoint (speechkit.json), a "
                         "transformers Whisper directory nor an audio-text-to-text model "
                         "speechkit runs (config.json model_type; see `speechkit models`)")


def ct2_compute_type(runtime: RuntimeOptions) -> str:
    """CTranslate2's compute type for a --dtype: int8 unless float32 is asked for."""
    return "float32" if runtime.dtype == "float32" else "int8"


def names_whisper(name: str) -> bool:
    """Whether `load_model(name)` loads a Whisper model, known without loading anything."""
    from speechkit.models.catalogue import CATALOGUE
    from speechkit.models.speechllm.checkpoint import is_speechllm_checkpoint

    path = Path(name).expanduser()
    if name in CATALOGUE:
        return CATALOGUE[name].kind == "whisper"
    if path.is_dir():
        return _is_whisper_dir(path) and not is_speechllm_checkpoint(path)
    return not path.exists() and "/" in name and not name.startswith((".", "/", "~"))  # hub id

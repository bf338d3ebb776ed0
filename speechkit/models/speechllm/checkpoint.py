"""The speechkit checkpoint directory: `speechkit.json` spec, bridge safetensors, LoRA adapter."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from speechkit.errors import SpeechkitError

SPEC_FILE = "speechkit.json"
WEIGHTS_FILE = "bridge.safetensors"  # bridge + learnable layer weights + added-token embeddings
ADAPTER_DIR = "lora"  # peft LoRA adapter (adapter_config.json + adapter_model.safetensors)
FORMAT = "speechkit-speechllm"
FORMAT_VERSION = 1
ENCODER_TYPES = ("whisper", "wavlm", "hubert", "wav2vec2")
BRIDGE_TYPES = ("linear", "conv1d")
TEMPLATES = ("salmonn", "llama-avsr", "wavllm", "chat")
POOLINGS = ("stack", "mean")


@dataclass
class EncoderSpec:
    """One frozen encoder: its modality, architecture and where its weights come from."""

    modality: str = "audio"
    type: str = "whisper"
    source: str = "whisper-base"  # built-in name, local dir, hub id, or "random" (uses `config`)
    dim: int = 0  # output feature size; checked against the loaded encoder and the bridge
    layer_weights: bool = False  # SpeechVerse: learnable softmax-weighted sum of all layers
    window_s: float = 30.0  # longer audio is encoded in windows of this length and concatenated
    config: dict[str, Any] | None = None  # transformers config for source "random"


@dataclass
class BridgeInput:
    """Per-modality compression and projection settings of a bridge."""

    in_dim: int
    rate: int = 4  # encoder frames merged into one LLM token (Llama-AVSR: audio 3-4, video 2)
    pooling: str = "stack"  # stack (concatenate k frames) | mean (average k frames)
    hidden_dim: int = 0  # 0 = one linear layer; else Linear -> GELU -> Linear


@dataclass
class BridgeSpec:
    """The trainable part between encoders and the LLM."""

    type: str = "linear"
    out_dim: int = 0  # must equal the LLM hidden size
    inputs: dict[str, BridgeInput] = field(default_factory=dict)


@dataclass
class LoraSpec:
    """A peft LoRA adapter stored in the checkpoint directory."""

    path: str = ADAPTER_DIR
    r: int = 8
    alpha: float = 32.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    scaling: float | None = None  # overrides alpha / r at load time (Llama-AVSR: 8 / 64)


@dataclass
class LLMSpec:
    """The causal LM: source, expected sizes and its adapter."""

    source: str = "smollm2-135m"  # built-in name, local dir, hub id, or "random" (uses `config`)
    hidden_size: int = 0
    vocab_size: int = 0  # tokenizer length after added tokens
    lora: LoraSpec | None = None
    config: dict[str, Any] | None = None  # transformers config for source "random"
    tokenizer: str | None = None  # tokenizer source when not the LLM's own (needed for "random")


@dataclass
class PromptSpec:
    """How text around the speech embeddings is laid out."""

    template: str = "salmonn"
    system: str | None = None  # system prompt (wavllm and chat templates)
    tasks: dict[str, str] = field(default_factory=dict)  # task -> prompt, overrides the defaults


@dataclass
class DecodeDefaults:
    """Decoding settings used when the caller does not give its own."""

    beam_size: int = 1
    max_new_tokens: int = 200
    stop: list[str] = field(default_factory=list)  # extra stop strings besides EOS


@dataclass
class CheckpointSpec:
    """Everything `speechkit.json` says about a speech-LLM checkpoint."""

    encoders: list[EncoderSpec]
    bridge: BridgeSpec
    llm: LLMSpec
    prompt: PromptSpec = field(default_factory=PromptSpec)
    added_tokens: list[str] = field(default_factory=list)
    decode: DecodeDefaults = field(default_factory=DecodeDefaults)
    format: str = FORMAT
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = SPEC_FILE) -> CheckpointSpec:
        """Parse and check a spec dict; a wrong key or value names its place and the fix."""
        if data.get("format") != FORMAT:
            raise SpeechkitError(f"{source}: not a speechkit speech-LLM spec (format "
                                 f"{data.get('format')!r}, expected {FORMAT!r})")
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise SpeechkitError(f"{source}: spec version {data['version']} is newer than this "
                                 f"speechkit understands ({FORMAT_VERSION}); upgrade speechkit")
        d = dict(data)
        bridge = _make(BridgeSpec, d.get("bridge", {}), f"{source}: bridge")
        bridge.inputs = {m: _make(BridgeInput, v, f"{source}: bridge.inputs.{m}")
                         for m, v in (bridge.inputs or {}).items()}
        llm = _make(LLMSpec, d.get("llm", {}), f"{source}: llm")
        if llm.lora is not None:
            llm.lora = _make(LoraSpec, llm.lora, f"{source}: llm.lora")
        spec = cls(
            encoders=[_make(EncoderSpec, e, f"{source}: encoders[{i}]")
                      for i, e in enumerate(d.get("encoders", []))],
            bridge=bridge, llm=llm,
            prompt=_make(PromptSpec, d.get("prompt", {}), f"{source}: prompt"),
            added_tokens=list(d.get("added_tokens", [])),
            decode=_make(DecodeDefaults, d.get("decode", {}), f"{source}: decode"),
            format=d["format"], version=int(d.get("version", FORMAT_VERSION)))
        spec.validate(source)
        return spec

    def validate(self, source: str = SPEC_FILE) -> None:
        """Check choices and that the parts' sizes agree, naming both sides of a mismatch."""
        if not self.encoders:
            raise SpeechkitError(f"{source}: no encoders; add one under \"encoders\"")
        _choice(self.bridge.type, BRIDGE_TYPES, f"{source}: bridge.type")
        _choice(self.prompt.template, TEMPLATES, f"{source}: prompt.template")
        for enc in self.encoders:
            _choice(enc.type, ENCODER_TYPES, f"{source}: encoder {enc.modality!r} type")
            inp = self.bridge.inputs.get(enc.modality)
            if inp is None:
                raise SpeechkitError(f"{source}: encoder modality {enc.modality!r} has no bridge "
                                     f"input (bridge.inputs has {sorted(self.bridge.inputs)})")
            _choice(inp.pooling, POOLINGS, f"{source}: bridge.inputs.{enc.modality}.pooling")
            if inp.rate < 1:
                raise SpeechkitError(f"{source}: bridge rate must be >= 1, got {inp.rate}")
            if enc.dim and enc.dim != inp.in_dim:
                raise SpeechkitError(
                    f"{source}: encoder {enc.modality!r} outputs {enc.dim} features but "
                    f"bridge.inputs.{enc.modality}.in_dim is {inp.in_dim}")
        if self.llm.hidden_size and self.bridge.out_dim != self.llm.hidden_size:
            raise SpeechkitError(f"{source}: bridge.out_dim {self.bridge.out_dim} != LLM hidden "
                                 f"size {self.llm.hidden_size} (llm.hidden_size)")


def _make(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise SpeechkitError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpeechkitError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as e:
        raise SpeechkitError(f"{where}: {e}") from None


def _choice(value: str, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        raise SpeechkitError(f"{where} is {value!r}; use one of {', '.join(choices)}")


def is_speechllm_checkpoint(path: str | Path) -> bool:
    """True when `path` is a directory holding a speechkit speech-LLM spec."""
    return (Path(path) / SPEC_FILE).is_file()


def read_spec(path: str | Path) -> CheckpointSpec:
    """Read and validate `speechkit.json` in a checkpoint directory."""
    file = Path(path) / SPEC_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpeechkitError(f"{path}: no {SPEC_FILE}; not a speechkit checkpoint") from None
    except ValueError as e:
        raise SpeechkitError(f"{file}: invalid JSON ({e})") from None
    return CheckpointSpec.from_dict(data, str(file))


def write_spec(path: str | Path, spec: CheckpointSpec) -> None:
    """Write `speechkit.json` (pretty, stable key order)."""
    spec.validate()
    (Path(path) / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")


def load_weights(file: str | Path) -> dict[str, torch.Tensor]:
    """Load tensors without running pickled code: safetensors, or torch.load(weights_only)."""
    file = Path(file)
    if not file.is_file():
        raise SpeechkitError(f"weights file {file} is missing")
    if file.suffix == ".safetensors":
        return load_file(str(file))
    try:
        obj = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as e:  # an UnpicklingError names the global it refused
        raise SpeechkitError(f"{file}: refused to load (only plain tensors are allowed, no "
                             f"pickled code): {str(e).splitlines()[0]}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # SALMONN-style {"model": state_dict, ...}
    return obj


def save_weights(file: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save tensors as safetensors (contiguous CPU copies)."""
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(file))


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict that reports missing and unexpected keys together in one error."""
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise SpeechkitError(f"{what}: weights do not fit: missing {_short(result.missing_keys)}, "
                             f"unexpected {_short(result.unexpected_keys)}")


def _short(keys: list[str], n: int = 6) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return f"{list(keys[:n])}{more}" if keys else "none"

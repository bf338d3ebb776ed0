"""The speechkit checkpoint directory: `speechkit.json` spec, bridge safetensors, LoRA adapter."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from safetensors.torch import save_file

from speechkit.errors import SpeechkitError
from speechkit.models.speechllm.typed_json import describe_json, typed_dataclass, typed_value

SPEC_FILE = "speechkit.json"
WEIGHTS_FILE = "bridge.safetensors"  # bridge + learnable layer weights + added-token embeddings
ADAPTER_DIR = "lora"  # peft LoRA adapter (adapter_config.json + adapter_model.safetensors)
FORMAT = "speechkit-speechllm"
FORMAT_VERSION = 1
TEMPLATES = ("salmonn", "llama-avsr", "wavllm", "chat")
POOLINGS = ("stack", "mean")
FRAME_ROUNDINGS = ("ceil", "floor")
FRAME_RATE = 50  # Hz: Whisper encoder frames, the grid the Q-Former's streams share
WHISPER_WINDOW_S = 30.0  # the longest window Whisper's encoder reads
PAD_WINDOW_TYPES = ("whisper", "beats")  # encoders that can yield whole windows (pad_window)
STREAMS = ("audio", "video")  # the input streams an encoder can read


@dataclass
class EncoderSpec:
    """One frozen encoder: its modality, architecture and where its weights come from."""

    modality: str = "audio"  # the encoder's name: its bridge input and its place in the prompt
    stream: str = "audio"  # the input stream it reads: "audio" (16 kHz) or "video" (lip crops)
    type: str = "whisper"
    source: str = "whisper-base"  # built-in name, local dir, hub id, or "random" (uses `config`)
    dim: int = 0  # output feature size; checked against the loaded encoder and the bridge
    layer_weights: bool = False  # SpeechVerse: learnable softmax-weighted sum of all layers
    window_s: float = 30.0  # longer audio is encoded in windows of this length and concatenated
    # SALMONN: every window yields its whole window of frames (Whisper's output over the
    # padding; BEATs zeros), as SALMONN always feeds 30 s; whisper and beats encoders only
    pad_window: bool = False
    # WavLLM: audio longer than one window has its last window zero-padded to a whole one (its
    # Whisper chunks run as one batch cut to the longest, so the last one keeps the frames over
    # its padding); audio within one window is left as it is
    pad_last_window: bool = False
    # Shorter audio is zero-padded to this many seconds first (SALMONN pads every clip to 1 s)
    min_s: float = 0.0
    # Llama-AVSR's test transform: each waveform layer-normalized (zero mean, unit variance,
    # eps 1e-8) before the encoder
    wave_norm: bool = False
    # Whisper frames kept of a window: ceil(samples / 320), or Llama-AVSR's floor; at least
    # min_frames (Llama-AVSR keeps max(int(n / 320), 25))
    frame_rounding: str = "ceil"
    min_frames: int = 1
    config: dict[str, Any] | None = None  # transformers config for source "random"


@dataclass
class BridgeInput:
    """Per-modality compression and projection settings of a bridge."""

    in_dim: int
    rate: int = 4  # encoder frames merged into one LLM token (Llama-AVSR: audio 3-4, video 2)
    pooling: str = "stack"  # stack (concatenate k frames) | mean (average k frames)
    hidden_dim: int = 0  # 0 = one linear layer; else Linear -> GELU -> Linear
    adapter_dim: int = 0  # dual: subsampler output = adapter width (WavLLM 1024)
    proj_dim: int = 0  # dual: per-stream projection before the fusion layer (WavLLM 2048)
    norm: bool = False  # llama-avsr: LayerNorm after the projector (--layernorm-projector)
    # dual: the subsampler runs over each window of this many input frames alone and the
    # windows are joined (WavLLM: each 30 s Whisper chunk, 1500 frames); 0 = the whole sequence
    window_frames: int = 0


@dataclass
class QFormerSpec:
    """SALMONN's window-level Q-Former: BERT layers with cross-attention (BERT-base sizes)."""

    hidden_size: int = 768
    layers: int = 2
    heads: int = 12
    intermediate_size: int = 3072
    queries: int = 1  # query tokens per window
    window: int = 17  # encoder frames per window: 0.333 s at 50 Hz (SALMONN)
    stride: int = 17
    segment: int = 1500  # frames per 30 s encoder window; no Q-Former window straddles two
    layer_norm_eps: float = 1e-12


@dataclass
class BridgeSpec:
    """The trainable part between encoders and the LLM."""

    type: str = "linear"
    out_dim: int = 0  # must equal the LLM hidden size
    inputs: dict[str, BridgeInput] = field(default_factory=dict)
    qformer: QFormerSpec | None = None  # type "qformer" (SALMONN); None = the defaults


@dataclass
class LoraSpec:
    """A peft LoRA adapter stored in the checkpoint directory."""

    path: str = ADAPTER_DIR
    r: int = 8
    alpha: float = 32.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    scaling: float | None = None  # overrides alpha / r at load time (Llama-AVSR: 8 / 64)


@dataclass
class PromptLoraSpec:
    """WavLLM's prompt-aware LoRA: one safetensors file with the LoRA pairs and the gate network."""

    path: str = "prompt_lora.safetensors"
    r: int = 8
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    gate_dim: int = 1024  # hidden width of the gate network (WavLLM scale_fc_1: 4096 -> 1024)
    gate_max: float = 3.0  # the gate is clamped to [0, gate_max] (WavLLM)
    interleaved_gate: bool = False  # gate in Meta Llama's interleaved RoPE order (converted WavLLM)


@dataclass
class LLMSpec:
    """The causal LM: source, expected sizes and its adapter."""

    source: str = "smollm2-135m"  # built-in name, local dir, hub id, or "random" (uses `config`)
    hidden_size: int = 0
    vocab_size: int = 0  # tokenizer length after added tokens
    lora: LoraSpec | None = None
    config: dict[str, Any] | None = None  # transformers config for source "random"
    tokenizer: str | None = None  # tokenizer source when not the LLM's own (needed for "random")
    prompt_lora: PromptLoraSpec | None = None  # WavLLM: LoRA weighted by a gate from the prompt


@dataclass
class PromptSpec:
    """How text around the speech embeddings is laid out."""

    template: str = "salmonn"
    system: str | None = None  # system prompt (wavllm and chat templates)
    tasks: dict[str, str] = field(default_factory=dict)  # task -> prompt, overrides the defaults
    # bridge output -> [open, close] text around its embeddings (Llama-AVSR: "<audio>", "</audio>")
    wrap: dict[str, list[str]] = field(default_factory=dict)


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
    def from_dict(cls, data: Any, source: str = SPEC_FILE) -> CheckpointSpec:
        """Parse and check a spec dict; a wrong key or value names its place and the fix."""
        if not isinstance(data, dict):
            raise SpeechkitError(f"{source}: expected a JSON object, got {describe_json(data)}")
        if data.get("format") != FORMAT:
            raise SpeechkitError(f"{source}: not a speechkit speech-LLM spec (format "
                                 f"{data.get('format')!r}, expected {FORMAT!r})")
        version = typed_value(data.get("version", FORMAT_VERSION), int, "version", source)
        if version > FORMAT_VERSION:
            raise SpeechkitError(f"{source}: spec version {version} is newer than this "
                                 f"speechkit understands ({FORMAT_VERSION}); upgrade speechkit")
        spec = typed_dataclass(cls, data, "", source)
        spec.validate(source)
        return spec

    def validate(self, source: str = SPEC_FILE) -> None:
        """Check choices, ranges and that the parts' sizes agree, naming the key."""
        if not self.encoders:
            raise SpeechkitError(f"{source}: no encoders; add one under \"encoders\"")
        from speechkit.models.speechllm.bridges import BRIDGES  # the registry imports these specs

        _choice(self.bridge.type, tuple(BRIDGES), f"{source}: bridge.type")
        _choice(self.prompt.template, TEMPLATES, f"{source}: prompt.template")
        _at_least(self.bridge.out_dim, 1, "bridge.out_dim", source)
        modalities = [e.modality for e in self.encoders]
        if len(set(modalities)) != len(modalities):
            raise SpeechkitError(f"{source}: encoders repeat a modality ({modalities}); give "
                                 "each encoder its own modality")
        for i, enc in enumerate(self.encoders):
            _check_encoder(enc, f"encoders[{i}]", source)
            inp = self.bridge.inputs.get(enc.modality)
            if inp is None:
                raise SpeechkitError(f"{source}: encoder modality {enc.modality!r} has no bridge "
                                     f"input (bridge.inputs has {sorted(self.bridge.inputs)})")
            if enc.dim and enc.dim != inp.in_dim:
                raise SpeechkitError(
                    f"{source}: encoder {enc.modality!r} outputs {enc.dim} features but "
                    f"bridge.inputs.{enc.modality}.in_dim is {inp.in_dim}")
        for modality, inp in self.bridge.inputs.items():
            key = f"bridge.inputs.{modality}"
            _choice(inp.pooling, POOLINGS, f"{source}: {key}.pooling")
            _at_least(inp.in_dim, 1, f"{key}.in_dim", source)
            _at_least(inp.rate, 1, f"{key}.rate", source)
            _at_least(inp.hidden_dim, 0, f"{key}.hidden_dim", source)
            _at_least(inp.window_frames, 0, f"{key}.window_frames", source)
        if self.bridge.type == "qformer":
            _check_qformer(self.bridge.qformer or QFormerSpec(), self.encoders, source)
        _check_llm(self.llm, source)
        if self.llm.hidden_size and self.bridge.out_dim != self.llm.hidden_size:
            raise SpeechkitError(f"{source}: bridge.out_dim {self.bridge.out_dim} != LLM hidden "
                                 f"size {self.llm.hidden_size} (llm.hidden_size)")
        _at_least(self.decode.beam_size, 1, "decode.beam_size", source)
        _at_least(self.decode.max_new_tokens, 1, "decode.max_new_tokens", source)
        _nonempty(self.decode.stop, "decode.stop", source)
        _nonempty(self.added_tokens, "added_tokens", source)
        for name, pair in self.prompt.wrap.items():
            if len(pair) != 2:
                raise SpeechkitError(f"{source}: prompt.wrap.{name} must be [open, close] (two "
                                     f"strings), got {len(pair)}")


def _check_encoder(enc: EncoderSpec, key: str, source: str) -> None:
    from speechkit.models.speechllm.encoders import ENCODERS  # the registry imports these specs

    _choice(enc.type, tuple(ENCODERS), f"{source}: {key}.type")
    _nonempty([enc.modality], f"{key}.modality", source)
    _choice(enc.stream, STREAMS, f"{source}: {key}.stream")
    _nonempty([enc.source], f"{key}.source", source)
    _at_least(enc.dim, 0, f"{key}.dim", source)
    _at_least(enc.window_s, 0, f"{key}.window_s", source, strict=True)
    _at_least(enc.min_s, 0, f"{key}.min_s", source)
    _choice(enc.frame_rounding, FRAME_ROUNDINGS, f"{source}: {key}.frame_rounding")
    _at_least(enc.min_frames, 1, f"{key}.min_frames", source)
    if enc.pad_window and enc.type not in PAD_WINDOW_TYPES:
        raise SpeechkitError(f"{source}: {key}.pad_window is for {' and '.join(PAD_WINDOW_TYPES)} "
                             f"encoders, not {enc.type!r}; set it to false")
    if enc.source == "random" and not enc.config:
        raise SpeechkitError(f"{source}: {key}.source is \"random\" but {key}.config is empty; "
                             "give the encoder's transformers config there")


def _check_qformer(q: QFormerSpec, encoders: list[EncoderSpec], source: str) -> None:
    for key in ("hidden_size", "layers", "heads", "intermediate_size", "queries", "window",
                "stride"):
        _at_least(getattr(q, key), 1, f"bridge.qformer.{key}", source)
    _at_least(q.segment, q.window, "bridge.qformer.segment", source)
    if q.hidden_size % q.heads:
        raise SpeechkitError(f"{source}: bridge.qformer.hidden_size {q.hidden_size} is not a "
                             f"multiple of bridge.qformer.heads {q.heads}; fix one of them")
    for enc in encoders:  # the streams are joined frame by frame, window by window (50 Hz)
        if enc.window_s > WHISPER_WINDOW_S:
            raise SpeechkitError(f"{source}: encoder {enc.modality!r} window_s {enc.window_s:g} "
                                 f"is longer than Whisper's {WHISPER_WINDOW_S:g} s; use at most that")
        if round(enc.window_s * FRAME_RATE) != q.segment:
            raise SpeechkitError(f"{source}: encoder {enc.modality!r} window_s {enc.window_s:g} "
                                 f"is not bridge.qformer.segment {q.segment} frames at 50 Hz; "
                                 "give every encoder the same window_s = segment / 50")


def _check_llm(llm: LLMSpec, source: str) -> None:
    _nonempty([llm.source], "llm.source", source)
    _at_least(llm.hidden_size, 0, "llm.hidden_size", source)
    _at_least(llm.vocab_size, 0, "llm.vocab_size", source)
    if llm.source == "random" and not llm.config:
        raise SpeechkitError(f"{source}: llm.source is \"random\" but llm.config is empty; give "
                             "the LLM's transformers config there")
    if llm.source == "random" and not llm.tokenizer:
        raise SpeechkitError(f"{source}: llm.source is \"random\" and needs llm.tokenizer (a "
                             "built-in name, directory or hub id)")
    if llm.tokenizer is not None:
        _nonempty([llm.tokenizer], "llm.tokenizer", source)
    lora = llm.lora
    if lora is None:
        return
    path = PurePosixPath(lora.path)
    if not lora.path or path.is_absolute() or ".." in path.parts or lora.path.startswith("~"):
        raise SpeechkitError(f"{source}: llm.lora.path {lora.path!r} must be a relative path "
                             "inside the checkpoint directory (e.g. \"lora\"); copy the "
                             "adapter there")
    _at_least(lora.r, 1, "llm.lora.r", source)
    _at_least(lora.alpha, 0, "llm.lora.alpha", source, strict=True)
    if lora.scaling is not None:
        _at_least(lora.scaling, 0, "llm.lora.scaling", source, strict=True)
    if not lora.target_modules:
        raise SpeechkitError(f"{source}: llm.lora.target_modules is empty; name the modules "
                             "the adapter wraps (e.g. [\"q_proj\", \"v_proj\"])")
    _nonempty(lora.target_modules, "llm.lora.target_modules", source)


def _nonempty(values: list[str], key: str, source: str) -> None:
    for v in values:
        if not v.strip():
            raise SpeechkitError(f"{source}: {key} holds an empty string; remove it or fill it in")


def _at_least(value: float, low: float, key: str, source: str, strict: bool = False) -> None:
    if value < low or (strict and value == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise SpeechkitError(f"{source}: {key} must be {bound}, got {value:g}")


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


def save_weights(file: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save tensors as safetensors (contiguous CPU copies)."""
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(file))


def check_state_fits(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str,
                     against: str, optional: frozenset[str] | set[str] = frozenset()) -> None:
    """One error naming every missing, unexpected (beyond `optional`) and misshapen key of a
    weights file against the tensors it must fill: "`what`: missing ..., shape (file vs
    `against`) ..."."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - set(optional))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise SpeechkitError(f"{what}: missing {missing[:6] or 'none'}, unexpected "
                             f"{unexpected[:6] or 'none'}, shape (file vs {against}) {wrong[:6] or 'ok'}")


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict that reports missing and unexpected keys together in one error."""
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise SpeechkitError(f"{what}: weights do not fit: missing {_short(result.missing_keys)}, "
                             f"unexpected {_short(result.unexpected_keys)}")


def _short(keys: list[str], n: int = 6) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return f"{list(keys[:n])}{more}" if keys else "none"

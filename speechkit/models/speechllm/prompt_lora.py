"""WavLLM's prompt-aware LoRA: the LoRA update of each adapted projection is weighted, per
output channel, by a gate computed from the task prompt.

The gate (WavLLM `second_stage_update_scale`): the prompt in double quotes, without BOS, runs
through the LLM without LoRA; its last layer's states (before the final norm) go through
fc2(GELU(fc1(h))), are pooled with softmax attention weights over the tokens, then
relu and clamp to [0, gate_max]. Each projection adds (x A^T B^T) * gate instead of the
fixed alpha / r scaling. The gate is computed once per distinct prompt, for one prompt at a
time, so a batch sees what each item alone sees."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechkit.errors import SpeechkitError
from speechkit.models.safe_load import inside, load_weights
from speechkit.models.speechllm.checkpoint import PromptLoraSpec, check_state_fits
from speechkit.models.speechllm.prompts import encode

GATE_PREFIX = "gate."
ROPE_MODULES = ("q_proj", "k_proj")  # output channels that Meta -> HF conversion permutes
GATE_MODES = ("prompt", "off")  # or a number: the same gate value for every channel
GATE_CACHE = 4096  # prompts whose gate is kept (sqa asks one question per item)


class PromptGate(nn.Module):
    """Prompt states [L, H] -> gate [H] (WavLLM scale_fc_1, scale_fc_2, scale_weight_attention)."""

    def __init__(self, hidden: int, gate_dim: int, gate_max: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, gate_dim)
        self.fc2 = nn.Linear(gate_dim, hidden)
        self.attention = nn.Linear(hidden, 1)
        self.gate_max = gate_max

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        s = self.fc2(nn.functional.gelu(self.fc1(h)))
        w = torch.softmax(self.attention(s), dim=0)
        return torch.clamp(torch.relu((s * w).sum(0)), max=self.gate_max)


class GatedLoRALinear(nn.Module):
    """base(x) + lora_B(lora_A(x)) * gate, the gate [B, out] set for the batch by `PromptLoRA`."""

    def __init__(self, base: nn.Module, r: int, owner: PromptLoRA, order: torch.Tensor | None):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        self._owner = [owner]  # a plain list: the owner is no submodule of its layers
        self.register_buffer("order", order, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        gate = self._owner[0].current
        if gate is None:
            return out
        if isinstance(gate, torch.Tensor):
            if self.order is not None:
                gate = gate[:, self.order]
            if gate.shape[0] != x.shape[0]:  # beam search: each item's rows side by side
                gate = gate.repeat_interleave(x.shape[0] // gate.shape[0], dim=0)
            gate = gate[:, None, :]
        delta = self.lora_B(self.lora_A(x.to(self.lora_A.weight.dtype)))
        return out + (delta * gate).to(out.dtype)


class PromptLoRA(nn.Module):
    """The gate network and the gated LoRA layers wrapped around an LLM's projections."""

    def __init__(self, llm: Any, spec: PromptLoraSpec, hidden: int) -> None:
        super().__init__()
        self.spec, self.llm = spec, [llm]
        self.gate = PromptGate(hidden, spec.gate_dim, spec.gate_max)
        self.layers = nn.ModuleDict()
        self.current: torch.Tensor | float | None = None  # the gate of the running batch
        self.mode: str | float = "prompt"
        self._cache: dict[str, torch.Tensor] = {}

    def prompt_gate(self, prompt: str, tokenizer: Any) -> torch.Tensor:
        """The gate [H] of one prompt (cached per prompt text)."""
        if prompt not in self._cache:
            if len(self._cache) >= GATE_CACHE:
                self._cache.clear()
            ids = encode(tokenizer, f'"{prompt}"')  # WavLLM: sp encode, no BOS
            self._cache[prompt] = self.gate(last_layer_states(self.llm[0], ids).to(
                self.gate.fc1.weight.dtype))
        return self._cache[prompt]

    @contextmanager
    def gated(self, prompts: list[str], tokenizer: Any) -> Iterator[None]:
        """Within the block the LoRA layers use the gate of each item's prompt (or the override)."""
        try:
            if self.mode == "prompt":
                with torch.inference_mode():
                    self.current = torch.stack([self.prompt_gate(p, tokenizer) for p in prompts])
            else:
                self.current = None if self.mode == "off" else float(self.mode)
            yield
        finally:
            self.current = None

    def describe(self) -> dict[str, Any]:
        return {"lora_gate": self.mode, "r": self.spec.r, "targets": list(self.spec.target_modules)}


def last_layer_states(llm: Any, ids: list[int]) -> torch.Tensor:
    """The last decoder layer's output [L, H] (before the final norm) for one token sequence."""
    base = llm.get_decoder() if hasattr(llm, "get_decoder") else llm.model
    seen: list[torch.Tensor] = []

    def keep(_module: nn.Module, _args: Any, output: Any) -> None:
        seen.append(output[0] if isinstance(output, tuple) else output)

    hook = base.layers[-1].register_forward_hook(keep)
    try:
        device = llm.get_input_embeddings().weight.device
        with torch.inference_mode():
            base(input_ids=torch.tensor([ids], device=device), use_cache=False)
    finally:
        hook.remove()
    return seen[-1][0].float()


def check_gate_mode(value: str | float | None) -> str | float:
    """'prompt' (the default), 'off', or a number >= 0 used as the gate for every channel."""
    if value is None:
        return "prompt"
    if isinstance(value, str) and value in GATE_MODES:
        return value
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not (number >= 0 and math.isfinite(number)):
        raise SpeechkitError(f"--lora-gate {value!r}: use prompt, off or a number >= 0")
    return number


def rope_order(out: int, n_heads: int) -> torch.Tensor:
    """Index taking a vector in Meta Llama's interleaved RoPE channel order to HF's halves."""
    head = out // n_heads
    return torch.arange(out).view(n_heads, head // 2, 2).transpose(1, 2).reshape(out)


def attach_prompt_lora(llm: Any, root: Path, spec: PromptLoraSpec, where: str) -> PromptLoRA:
    """Wrap the target projections of `llm` and load the LoRA and gate weights from `root`."""
    file = inside(root, spec.path, f"{where} llm.prompt_lora.path")
    state = load_weights(file)
    config = llm.config
    hidden, heads = int(config.hidden_size), int(config.num_attention_heads)
    owner = PromptLoRA(llm, spec, hidden)
    targets = [(name, m) for name, m in llm.named_modules()
               if name.rsplit(".", 1)[-1] in spec.target_modules and hasattr(m, "out_features")]
    if not targets:
        raise SpeechkitError(f"{where} llm.prompt_lora.target_modules {spec.target_modules} "
                             "match no layer of the LLM; name its projections (e.g. q_proj)")
    for name, module in targets:
        if module.out_features != hidden:
            raise SpeechkitError(f"{where} prompt-aware LoRA on {name}: its {module.out_features} "
                                 f"outputs differ from the gate's {hidden}; adapt only "
                                 "projections as wide as the hidden size")
        leaf = name.rsplit(".", 1)[-1]
        order = rope_order(hidden, heads) if spec.interleaved_gate and leaf in ROPE_MODULES else None
        wrapped = GatedLoRALinear(module, spec.r, owner, order)
        owner.layers[name.replace(".", "/")] = wrapped
        parent = llm.get_submodule(name.rsplit(".", 1)[0])
        setattr(parent, leaf, wrapped)
    _load(owner, state, file)
    device = llm.get_input_embeddings().weight.device
    owner.gate.to(device)
    for layer in owner.layers.values():
        layer.lora_A.to(device)
        layer.lora_B.to(device)
    return owner.eval().requires_grad_(False)


def _load(owner: PromptLoRA, state: dict[str, torch.Tensor], file: Path) -> None:
    """Load `gate.*` and `<module>.lora_{A,B}.weight`; one message for every key problem."""
    expected = {f"{GATE_PREFIX}{k}": v for k, v in owner.gate.state_dict().items()}
    for key, layer in owner.layers.items():
        name = key.replace("/", ".")
        expected[f"{name}.lora_A.weight"] = layer.lora_A.weight
        expected[f"{name}.lora_B.weight"] = layer.lora_B.weight
    check_state_fits(state, expected, f"{file} does not fit the LLM and llm.prompt_lora", "model")
    with torch.no_grad():
        for key, param in expected.items():
            param.copy_(state[key].to(param.dtype))

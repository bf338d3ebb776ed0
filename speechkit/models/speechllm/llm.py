"""Load the causal LM: source, quantization (4-bit NF4 default on CUDA), added tokens, LoRA."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from speechkit.errors import SpeechkitError
from speechkit.models.safe_load import load_weights, pretrained, refuse_custom_code
from speechkit.models.speechllm.checkpoint import SPEC_FILE, LLMSpec, LoraSpec
from speechkit.models.speechllm.sources import RANDOM, builtin_llms, random_config, resolve_source

log = logging.getLogger(__name__)

QUANTS = ("4bit", "8bit", "bf16", "fp16", "fp32")
FLOAT_QUANTS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
CUDA_COMPUTE = torch.bfloat16  # 4-bit compute dtype on a GPU (QLoRA recipe)
CPU_COMPUTE = torch.float32  # CPUs without bf16 units are far slower in bf16
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"  # older peft; read with weights_only=True
ADAPTER_CONFIG = "adapter_config.json"
RANDOM_SEED = 0  # source "random": the same weights on every load


def default_quant(device: str) -> str:
    """4-bit NF4 on CUDA, plain float32 on CPU."""
    return "4bit" if device.startswith("cuda") else "fp32"


def quantization_config(quant: str, device: str) -> Any:
    """The bitsandbytes config for `4bit`/`8bit`, None for float types."""
    from transformers import BitsAndBytesConfig

    if quant == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=CUDA_COMPUTE if device.startswith("cuda") else CPU_COMPUTE)
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def llm_directory(spec: LLMSpec) -> Path | None:
    """The LLM's local directory (None for source "random")."""
    return None if spec.source == RANDOM else resolve_source(spec.source, builtin_llms(), "LLM")


def llm_config(spec: LLMSpec) -> Any:
    """The LLM's transformers config (no weights)."""
    from transformers import AutoConfig

    directory = llm_directory(spec)
    if directory is not None:
        return pretrained(AutoConfig, directory)
    return random_config(spec.config, "llama", "llm.config")


def load_tokenizer(spec: LLMSpec, added_tokens: list[str]) -> Any:
    """The LLM tokenizer with the checkpoint's added tokens and a pad token."""
    from transformers import AutoTokenizer

    source = spec.tokenizer or spec.source
    if source == RANDOM:
        raise SpeechkitError(f"{SPEC_FILE}: llm.source is \"random\" and needs llm.tokenizer")
    tok = pretrained(AutoTokenizer, resolve_source(source, builtin_llms(), "tokenizer"))
    if added_tokens:
        tok.add_tokens(added_tokens, special_tokens=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_llm(spec: LLMSpec, device: str, quant: str, dtype: torch.dtype | None = None) -> Any:
    """The causal LM, quantized or in a float dtype, frozen, on `device`."""
    from transformers import AutoModelForCausalLM

    if quant not in QUANTS:
        raise SpeechkitError(f"unknown --quant {quant!r}; use one of {', '.join(QUANTS)}")
    qconfig = quantization_config(quant, device)
    float_dtype = FLOAT_QUANTS.get(quant) or dtype or (
        CUDA_COMPUTE if device.startswith("cuda") else CPU_COMPUTE)
    directory = llm_directory(spec)
    with tempfile.TemporaryDirectory() as tmp:
        if directory is None:  # random weights: saved once so quantization streams from disk
            torch.manual_seed(RANDOM_SEED)
            model = AutoModelForCausalLM.from_config(llm_config(spec), dtype=float_dtype,
                                                     trust_remote_code=False)
            if qconfig is None:
                return model.to(device).eval().requires_grad_(False)
            model.save_pretrained(tmp)
            del model
            directory = Path(tmp)
        try:
            model = pretrained(
                AutoModelForCausalLM, directory, dtype=float_dtype, quantization_config=qconfig,
                device_map={"": device}, use_safetensors=_has_safetensors(directory))
        except (ImportError, RuntimeError, ValueError) as e:
            raise SpeechkitError(f"could not load LLM {spec.source} with --quant {quant} on "
                                 f"{device}: {str(e).splitlines()[0]}") from None
    if quant == "4bit" and not device.startswith("cuda"):
        batch_invariant_4bit_on_cpu(model)
    return model.eval().requires_grad_(False)


def batch_invariant_4bit_on_cpu(model: Any) -> None:
    """Keep 4-bit layers on bitsandbytes' dequantize-then-matmul CPU path.

    On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights at first use for a bf16
    kernel whose results depend on how many rows a call has, so a batch would not decode
    like the same items one at a time. The generic path keeps fp32 scales and is exact
    across batch sizes.
    """
    import bitsandbytes as bnb

    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False


def _has_safetensors(directory: Path) -> bool | None:
    return True if any(directory.glob("*.safetensors")) else None


def fit_vocab(model: Any, tokenizer: Any, spec: LLMSpec, added: torch.Tensor | None) -> None:
    """Grow the embeddings for added tokens and load their rows; disagreement is an error."""
    n_tok = len(tokenizer)
    if spec.vocab_size and spec.vocab_size != n_tok:
        raise SpeechkitError(f"speechkit.json says llm.vocab_size {spec.vocab_size} but the "
                             f"tokenizer of {spec.source} plus added tokens has {n_tok}")
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < n_tok:
        model.resize_token_embeddings(n_tok, mean_resizing=False)
        if added is None:  # rows no checkpoint holds (SALMONN's [PAD]): the mean row, not random
            _mean_rows(model, rows)
    if added is None:
        return
    emb = model.get_input_embeddings().weight
    n_added = added.shape[0]
    if added.shape[1] != emb.shape[1]:
        raise SpeechkitError(f"added-token embeddings are {added.shape[1]}-d but the LLM "
                             f"{spec.source} hidden size is {emb.shape[1]}")
    with torch.no_grad():
        emb[n_tok - n_added:n_tok] = added.to(emb.device, emb.dtype)


def _mean_rows(model: Any, rows: int) -> None:
    """New embedding and output rows past `rows` set to the mean of the old ones: the same on
    every load, and an output logit that is the mean logit (never chosen)."""
    with torch.no_grad():
        for table in {id(t): t for t in (model.get_input_embeddings(),
                                         model.get_output_embeddings()) if t is not None}.values():
            table.weight[rows:] = table.weight[:rows].mean(0)


def adapter_files(adapter_dir: Path) -> tuple[Path, Path]:
    """The adapter's config and weights file; a missing one is an error naming both."""
    files = [adapter_dir / ADAPTER_WEIGHTS, adapter_dir / ADAPTER_PICKLE]
    file = next((f for f in files if f.is_file()), None)
    if file is None or not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise SpeechkitError(f"LoRA adapter {adapter_dir}: needs {ADAPTER_CONFIG} and "
                             f"{ADAPTER_WEIGHTS}")
    return adapter_dir / ADAPTER_CONFIG, file


def lora_config(adapter_dir: Path, lora: LoraSpec) -> Any:
    """The adapter's peft LoraConfig (checked for code first); it must agree with the spec."""
    from peft import LoraConfig

    refuse_custom_code(adapter_dir)
    file = adapter_dir / ADAPTER_CONFIG
    try:
        config = LoraConfig.from_pretrained(str(adapter_dir), trust_remote_code=False)
    except (TypeError, ValueError) as e:
        raise SpeechkitError(f"{file}: not a valid LoRA config ({str(e).splitlines()[0]}); "
                             "re-export the adapter") from None
    for key, value in (("r", lora.r), ("lora_alpha", lora.alpha)):
        if getattr(config, key, None) != value:
            raise SpeechkitError(f"{file} has {key} {getattr(config, key, None)!r} but "
                                 f"{SPEC_FILE} llm.lora says {value!r}; make them agree")
    return config


def attach_lora(model: Any, adapter_dir: Path, lora: LoraSpec, merge: bool) -> Any:
    """Load a peft LoRA adapter (no pickles), apply a scaling override, merge when allowed."""
    from peft import get_peft_model, set_peft_model_state_dict
    from peft.tuners.lora import LoraLayer

    _, file = adapter_files(adapter_dir)
    config = lora_config(adapter_dir, lora)
    config.inference_mode = True
    config.base_model_name_or_path = getattr(model, "name_or_path", None)  # resolved source
    model = get_peft_model(model, config)
    state = load_weights(file)
    result = set_peft_model_state_dict(model, state)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise SpeechkitError(f"LoRA adapter {adapter_dir} does not fit the LLM: missing "
                             f"{missing[:6]}, unexpected {list(result.unexpected_keys)[:6]}")
    if lora.scaling is not None:
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for name in module.scaling:
                    module.scaling[name] = float(lora.scaling)
    if merge:
        return model.merge_and_unload()
    return model

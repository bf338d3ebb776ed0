"""Speech-LLM checkpoint commands: `checkpoint new`, `models` (built-ins) and `models show DIR`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from speechkit.models.catalogue import names
from speechkit.terminal import PlainTable, plain

out = Console()

checkpoint_app = typer.Typer(help="Create speech-LLM checkpoints.", no_args_is_help=True)
models_app = typer.Typer(help="List built-in models and components, or describe a checkpoint.")


@checkpoint_app.command("new")
def new(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint directory to write.",
                                          show_default=False)],
    audio_encoder: Annotated[str, typer.Option(
        help=f"Built-in name ({', '.join(names('whisper'))}), a local transformers dir "
             "(Whisper, WavLM, HuBERT, wav2vec2) or a hub id.")] = "whisper-base",
    bridge: Annotated[str, typer.Option(help="linear (Llama-AVSR) or conv1d (SpeechVerse).")
                      ] = "linear",
    llm: Annotated[str, typer.Option(help=f"Built-in name ({', '.join(names('llm'))}), a local "
                                          "causal-LM dir or a hub id.")] = "smollm2-135m",
    rate: Annotated[int, typer.Option(min=1, help="Encoder frames per LLM token (50 Hz / rate)."
                                      )] = 4,
    pooling: Annotated[str, typer.Option(help="linear bridge: stack or mean.")] = "stack",
    hidden_dim: Annotated[int, typer.Option(
        min=0, help="Bridge hidden size; 0 = one linear layer (conv1d: = LLM size).")] = 0,
    lora_r: Annotated[int, typer.Option(min=0, help="LoRA rank; 0 = no adapter.")] = 8,
    lora_alpha: Annotated[float, typer.Option(help="LoRA alpha (scaling alpha / r).")] = 32.0,
    lora_target: Annotated[list[str] | None, typer.Option(
        help="LoRA target module names (repeat); default q_proj and v_proj.")] = None,
    template: Annotated[str | None, typer.Option(
        help="Prompt template: salmonn, llama-avsr, wavllm or chat (default: chat when the "
             "LLM has a chat template, else salmonn).")] = None,
    layer_weights: Annotated[bool, typer.Option(
        help="Learnable weighted sum of encoder layers (SpeechVerse).")] = False,
    added_token: Annotated[list[str] | None, typer.Option(
        help="Token to add to the LLM vocabulary (repeat), e.g. <audio>.")] = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Write a new, untrained checkpoint: random bridge, fresh LoRA, frozen parts by reference."""
    from speechkit.models.speechllm.create import new_checkpoint

    spec = new_checkpoint(out_dir, audio_encoder=audio_encoder, bridge=bridge, llm=llm,
                          rate=rate, pooling=pooling, hidden_dim=hidden_dim, lora_r=lora_r,
                          lora_alpha=lora_alpha, lora_targets=lora_target or None,
                          template=template, layer_weights=layer_weights,
                          added_tokens=added_token or None, overwrite=force)
    enc = spec.encoders[0]
    out.print(plain(f"wrote {out_dir}: {enc.type} {enc.source} ({enc.dim}) -> {spec.bridge.type} "
                    f"x{rate} -> {spec.llm.source} ({spec.llm.hidden_size}), template "
                    f"{spec.prompt.template}"))


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context) -> None:
    """List built-in models, encoders, LLMs, bridges and prompt templates."""
    if ctx.invoked_subcommand is not None:
        return
    from speechkit.models.catalogue import CATALOGUE
    from speechkit.models.speechllm.bridges import BRIDGES
    from speechkit.models.speechllm.checkpoint import TEMPLATES
    from speechkit.models.speechllm.encoders import ENCODERS

    table = Table("kind", "name", "description", "license", box=None)
    for name, entry in CATALOGUE.items():
        if entry.kind != "llm":
            table.add_row("model", name, entry.description, entry.license)
    for name, entry in CATALOGUE.items():
        if entry.kind == "whisper":
            table.add_row("encoder", name, f"encoder of {entry.description}")
    table.add_row("encoder", "<dir or hub id>", f"any of: {', '.join(ENCODERS)}")
    for name, entry in CATALOGUE.items():
        if entry.kind == "llm":
            table.add_row("llm", name, entry.description, entry.license)
    table.add_row("llm", "<dir or hub id>", "any transformers causal LM (4bit/8bit/bf16/fp32)")
    for name, bridge in BRIDGES.items():
        table.add_row("bridge", name, bridge.description)
    table.add_row("template", ", ".join(TEMPLATES), "prompt layouts (SALMONN, Llama-AVSR, "
                  "WavLLM, the LLM's chat template)")
    for row in audio_llm_rows():
        table.add_row(*(plain(cell) for cell in row))
    out.print(table)


def audio_llm_rows() -> list[tuple[str, str, str]]:
    """One `speechkit models` row per transformers audio-text-to-text family --model runs."""
    from speechkit.models.hf_audio import FAMILIES

    return [("audio-llm", f"<dir> of model_type {f.model_type}",
             f"{f.title}: {' '.join(f.tasks)}; {f.window_s:g} s windows; 4-bit on GPU"
             + (f"; needs {f.needs[1]}" if f.needs else ""))
            for f in FAMILIES.values()]


@models_app.command("show")
def show(
    directory: Annotated[Path, typer.Argument(help="A speechkit checkpoint directory.",
                                              show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print speechkit.json as is.")] = False,
) -> None:
    """Describe a checkpoint: encoders, bridge, LLM, LoRA, prompts, decode defaults."""
    from safetensors import safe_open

    from speechkit.models.safe_load import bad_safetensors
    from speechkit.models.speechllm.checkpoint import WEIGHTS_FILE, read_spec
    from speechkit.models.speechllm.prompts import template_prompts

    spec = read_spec(directory)
    if as_json:
        print(json.dumps(spec.to_dict(), indent=2))
        return
    n_params = 0
    weights = directory / WEIGHTS_FILE
    if weights.is_file():
        try:
            with safe_open(str(weights), framework="pt") as h:
                for k in h.keys():
                    n_params += _numel(h, k)
        except Exception as e:  # SafetensorError: a damaged file or a pickle
            raise bad_safetensors(weights, e) from None
    table = PlainTable("part", "value", box=None, show_header=False)
    for e in spec.encoders:
        extra = ", weighted layer sum" if e.layer_weights else ""
        table.add_row(f"encoder ({e.modality})", f"{e.type} {e.source} ({e.dim}-d, "
                      f"{e.window_s:g} s windows{extra})")
    if spec.bridge.type == "qformer":  # one bridge over every stream
        from speechkit.models.speechllm.bridges.qformer import summary

        table.add_row("bridge", summary(spec.bridge))
    for m, inp in spec.bridge.inputs.items() if spec.bridge.type != "qformer" else ():
        table.add_row(f"bridge ({m})", f"{spec.bridge.type}: {inp.in_dim} -> {spec.bridge.out_dim},"
                      f" {inp.pooling} x{inp.rate}, hidden {inp.hidden_dim or '-'}")
    table.add_row("trainable weights", f"{n_params:,} in {WEIGHTS_FILE}")
    table.add_row("llm", f"{spec.llm.source} (hidden {spec.llm.hidden_size}, vocab "
                  f"{spec.llm.vocab_size})")
    if spec.llm.lora:
        lo = spec.llm.lora
        scale = lo.scaling if lo.scaling is not None else lo.alpha / lo.r
        table.add_row("lora", f"r={lo.r} alpha={lo.alpha:g} scaling={scale:g} on "
                      f"{', '.join(lo.target_modules)} ({lo.path}/)")
    if spec.llm.prompt_lora:
        pl = spec.llm.prompt_lora
        table.add_row("lora", f"r={pl.r} gated by the prompt (gate width {pl.gate_dim}, max "
                      f"{pl.gate_max:g}) on {', '.join(pl.target_modules)} ({pl.path})")
    table.add_row("template", spec.prompt.template + (f" (system: {spec.prompt.system})"
                                                      if spec.prompt.system else ""))
    for task, text in template_prompts(spec.prompt).items():
        table.add_row(f"prompt ({task})", text)
    if spec.added_tokens:
        table.add_row("added tokens", " ".join(spec.added_tokens))
    d = spec.decode
    table.add_row("decode", f"beam {d.beam_size}, max {d.max_new_tokens} new tokens, stop "
                  f"{d.stop or 'EOS'}")
    out.print(table, highlight=False)


def _numel(handle: object, key: str) -> int:
    n = 1
    for s in handle.get_slice(key).get_shape():  # type: ignore[attr-defined]
        n *= s
    return n


def register(app: typer.Typer) -> None:
    """Add `checkpoint` and `models` to the main app."""
    app.add_typer(checkpoint_app, name="checkpoint")
    app.add_typer(models_app, name="models")

"""`speechkit convert llama-avsr`: a released Llama-AVSR state dict as a speechkit checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from speechkit.commands.convert import convert_app, shaped_like
from speechkit.terminal import plain

out = Console()


@convert_app.command("llama-avsr")
def llama_avsr(
    ckpt: Annotated[Path, typer.Option("--ckpt", help="The released state dict (.pth/.pt, read "
                                       "with weights_only=True, or .safetensors).",
                                       show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint directory to write.",
                                          show_default=False)],
    llm: Annotated[str, typer.Option(
        help="The base LLM the checkpoint was trained from (a local dir or hub id): its config "
             "and tokenizer; the weights come from the checkpoint.")] = (
        "meta-llama/Meta-Llama-3.1-8B"),
    lora_scaling: Annotated[float, typer.Option(
        min=0.0, help="LoRA output scaling (Llama-AVSR: alpha 8 / reduction 64).")] = 8 / 64,
    video_norm_first: Annotated[bool | None, typer.Option(
        "--video-norm-first/--video-norm-after",
        help="AV-HuBERT layer norm placement (default: first for Large, width 1024).")] = None,
    compression_mode: Annotated[str | None, typer.Option(
        "--compression-mode", help="The training run's --compression-mode: stack (read off the "
        "projector) or avg-pooling (give its ratios).", show_default=False)] = None,
    ratio_audio: Annotated[int | None, typer.Option(
        "--downsample-ratio-audio", min=1, help="The training run's --downsample-ratio-audio "
        "(needed for avg-pooling).", show_default=False)] = None,
    ratio_video: Annotated[int | None, typer.Option(
        "--downsample-ratio-video", min=1, help="The training run's --downsample-ratio-video "
        "(needed for avg-pooling).", show_default=False)] = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Convert a Llama-AVSR checkpoint (ASR, VSR or AVSR): encoders, projectors, LLM with its
    added tokens, LoRA as a peft adapter, Llama-AVSR's prompts and beam-15 decoding."""
    from speechkit.models.speechllm.importers.llama_avsr import convert_llama_avsr

    with shaped_like("Llama-AVSR", ckpt):
        report = convert_llama_avsr(ckpt, out_dir, llm=llm, lora_scaling=lora_scaling,
                                    video_norm_first=video_norm_first, compression=compression_mode,
                                    ratios={m: r for m, r in (("audio", ratio_audio),
                                                              ("video", ratio_video)) if r},
                                    overwrite=force)
    spec = report.spec
    parts = ", ".join(f"{e.modality} {e.type} ({e.dim}) x{spec.bridge.inputs[e.modality].rate}"
                      for e in spec.encoders)
    out.print(plain(f"wrote {report.out}: {parts} -> LLM ({spec.llm.hidden_size}, "
                    f"{spec.llm.vocab_size} tokens); {report.mapped} keys mapped"))
    for why, n in sorted(report.dropped.items()):
        out.print(plain(f"  dropped {n} keys: {why}"))

"""`speechkit convert wavllm`: a WavLLM fairseq state dict -> a speechkit checkpoint directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from speechkit.commands.convert import convert_app, shaped_like
from speechkit.terminal import plain

out = Console()

@convert_app.command("wavllm")
def wavllm(
    ckpt: Annotated[Path, typer.Option(
        exists=True, dir_okay=False, show_default=False,
        help="WavLLM checkpoint (fairseq final.pt, read with weights_only=True, or safetensors).")],
    whisper: Annotated[Path, typer.Option(
        exists=True, file_okay=False, show_default=False,
        help="Whisper large-v2 transformers directory (config and preprocessor only).")],
    wavlm: Annotated[Path, typer.Option(
        exists=True, file_okay=False, show_default=False,
        help="WavLM base transformers directory (config and preprocessor only).")],
    llm: Annotated[Path, typer.Option(
        exists=True, file_okay=False, show_default=False,
        help="Llama-2-7B-chat transformers directory (config and tokenizer only).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", show_default=False,
                                          help="Checkpoint directory to write.")],
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Convert WavLLM (Whisper + WavLM, prompt-aware LoRA): every key is mapped or reported;
    an incomplete mapping is refused. The weights all come from --ckpt."""
    from speechkit.models.speechllm.importers.wavllm import convert_wavllm

    with shaped_like("WavLLM", ckpt):
        report = convert_wavllm(ckpt, out_dir, whisper=whisper, wavlm=wavlm, llm=llm, overwrite=force)
    parts = ", ".join(f"{k} {v}" for k, v in report["converted"].items())
    out.print(plain(f"wrote {report['out']}: {report['keys']} keys ({parts})"))
    for key, why in report["ignored"].items():
        out.print(plain(f"not converted: {key} ({why})"))

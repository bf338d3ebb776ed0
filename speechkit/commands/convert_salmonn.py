"""`speechkit convert salmonn`: a released SALMONN checkpoint as a speechkit checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from speechkit.commands.convert import convert_app, shaped_like
from speechkit.terminal import plain

out = Console()


@convert_app.command("salmonn")
def salmonn(
    ckpt: Annotated[Path, typer.Option(help="SALMONN checkpoint (salmonn_v1.pth or "
                                            "salmonn_7b_v0.pth).", show_default=False)],
    whisper: Annotated[str, typer.Option(help="Whisper large-v2 transformers directory (or a "
                                              "built-in name).", show_default=False)],
    beats: Annotated[Path, typer.Option(help="BEATs checkpoint .pt (SALMONN: BEATs_iter3_plus_"
                                             "AS2M_finetuned_on_AS2M_cpt2.pt).", show_default=False)],
    llm: Annotated[str, typer.Option(help="Vicuna directory (7B or 13B v1.1, as the checkpoint "
                                          "was trained on).", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint directory to write.",
                                          show_default=False)],
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Convert SALMONN (Whisper + BEATs -> window Q-Former -> Vicuna with LoRA); every key of
    the checkpoint is placed or reported, and an incomplete one is refused."""
    from speechkit.models.speechllm.importers.salmonn import convert_salmonn

    with shaped_like("SALMONN", ckpt):
        done = convert_salmonn(ckpt, whisper, beats, llm, out_dir, overwrite=force)
    q, lora = done.spec.bridge.qformer, done.spec.llm.lora
    assert q is not None and lora is not None  # a SALMONN conversion always writes both
    out.print(plain(f"wrote {out_dir}: {done.mapped} tensors placed (Q-Former {q.layers} layers, "
                    f"{q.queries} query per {q.window} frames; LoRA r={lora.r} on "
                    f"{', '.join(lora.target_modules)})"))
    if done.dropped:
        out.print(plain(f"dropped {len(done.dropped)} keys that are not weights:"))
        for key, why in done.dropped.items():
            out.print(plain(f"  {key}: {why}"))

"""The `speechkit` command line. Thin: parse options, call the library, print."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from speechkit import __version__
from speechkit.errors import SpeechkitError

app = typer.Typer(
    name="speechkit",
    help="Batch transcription and evaluation with speech models (Whisper and speech LLMs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"speechkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False, show_time=False)])
    logging.getLogger("speechkit").setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' weight-loading bars
        # bitsandbytes looks for an optional hub kernel on CPU and warns when offline.
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
        import warnings

        warnings.filterwarnings("ignore")


@app.command()
def transcribe(
    inputs: Annotated[list[str], typer.Argument(
        help="Media files, directories (searched recursively), glob patterns or JSONL manifests "
             "(speechkit or NeMo style).", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help=(
        "Built-in name (whisper-base, whisper-tiny.en), a speechkit checkpoint dir, a local "
        "Whisper dir or a hub id."))] = "whisper-base",
    task: Annotated[str, typer.Option(help=(
        "Whisper: transcribe or translate (to English). Speech LLMs: asr, st, er, sv, sqa, aac."))
    ] = "transcribe",
    language: Annotated[str | None, typer.Option(
        "--language", "-l", help="Spoken language code (en, de, ...); detected when omitted.")] = None,
    target_language: Annotated[str | None, typer.Option(
        help="Target language for speech translation with speech LLMs.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Override the task prompt (speech LLMs).")] = None,
    beam_size: Annotated[int | None, typer.Option(min=1, help=(
        "1 = greedy; >1 = beam search. Default: the model's (Whisper 1; a checkpoint's "
        "speechkit.json decode settings)."), show_default=False)] = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help=(
        "Most tokens generated per 30 s segment. Default: the model's (Whisper 224; a "
        "checkpoint's speechkit.json)."), show_default=False)] = None,
    word_timestamps: Annotated[bool, typer.Option(
        "--word-timestamps", help="Whisper: also time every word (results' segments[].words; "
        "subtitle cues then break at word times).")] = False,
    batch_size: Annotated[int, typer.Option(
        min=0, help="Segments per forward pass; 0 = auto (8 on CPU, 32 on GPU).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    dtype: Annotated[str, typer.Option(
        help="auto (float16 on GPU, float32 on CPU), float32, float16, bfloat16, or int8 "
             "(CPU: dynamic int8 linear layers; faster, but results can vary with batch "
             "composition).")] = "auto",
    quant: Annotated[str | None, typer.Option(
        help="Speech-LLM weights: 4bit (default on GPU), 8bit, bf16 or fp32.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Results JSONL (default: OUTPUT_DIR/transcripts.jsonl).")] = None,
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", "-d", help="Where the results and --output-format files go (default: "
        "the folder of --out, else the current folder).")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--output-format", "--format", "-f", help="Also write one file per input, named after "
        "it: comma list of srt, vtt, txt, tsv, json, or all.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Redo items already in the results file (default: resume, skipping them).")] = False,
    audio_stream: Annotated[int | None, typer.Option(
        min=0, help="Which audio stream of each file to use (0 = first).")] = None,
    progress: Annotated[bool, typer.Option(
        help="Show progress: a live bar on a terminal, else a line every 10 s.")] = True,
) -> None:
    """Transcribe (or translate) media files in length-sorted batches; results go to JSONL.

    Resumes by default: items already "ok" in the results file are skipped. Exit code 0 when
    every item succeeded, 1 when some failed (their lines say why), 2 for usage errors.
    """
    from speechkit.data import expand_inputs
    from speechkit.formats import parse_formats
    from speechkit.models.base import DecodeOptions
    from speechkit.models.registry import RuntimeOptions
    from speechkit.transcribe import transcribe_to_jsonl

    formats = parse_formats(fmt)
    items = expand_inputs(inputs)
    if audio_stream is not None:
        for it in items:
            it.meta["audio_stream"] = audio_stream
    options = DecodeOptions(task=task, language=language, target_language=target_language,
                            beam_size=beam_size, max_new_tokens=max_new_tokens, prompt=prompt,
                            word_timestamps=word_timestamps)
    results_path = out or (output_dir or Path(".")) / "transcripts.jsonl"
    output_dir = output_dir or results_path.parent
    summary = transcribe_to_jsonl(
        items, model, options, results_path, runtime=RuntimeOptions(device, dtype, quant),
        batch_size=batch_size or None, formats=formats, format_dir=output_dir,
        overwrite=overwrite, console=err, progress=progress,
        echo=len(items) == 1 and out is None)
    raise typer.Exit(0 if summary.failed == 0 else 1)


def _register_subcommands() -> None:
    from speechkit.commands import bench, checkpoint, evaluation

    bench.register(app)
    evaluation.register(app)
    checkpoint.register(app)


def main() -> None:
    """Console entry point: user errors print one line and exit non-zero, no traceback."""
    _register_subcommands()
    try:
        rc = app(standalone_mode=False)
    except SpeechkitError as e:
        if _state["debug"]:
            err.print_exception()
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted: finished results are kept; rerun the same command to resume")
        sys.exit(130)
    except Exception as e:  # click usage errors and anything unforeseen
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if _state["debug"]:
            raise
        err.print(f"[bold red]error:[/] unexpected {type(e).__name__}: {e} (rerun with --debug "
                  "for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)

"""The `speechkit` command line. Thin: parse options, call the library, print."""

from __future__ import annotations

import inspect
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from speechkit import __version__
from speechkit.commands.options import (
    Address,
    BatchSize,
    BeamSize,
    Device,
    Dtype,
    EncoderWindow,
    Engine,
    GpusPerWorker,
    Language,
    LoraGate,
    LoraScale,
    MaxNewTokens,
    Model,
    NoSpeechThreshold,
    Overwrite,
    Progress,
    Prompt,
    Quant,
    Runner,
    TargetLanguage,
    Threads,
    Workers,
)
from speechkit.errors import SpeechkitError
from speechkit.heap import keep_freed_memory
from speechkit.subtitles import MAX_LINE_CHARS, MAX_LINES
from speechkit.terminal import safe
from speechkit.threads import passive_openmp_waits

app = typer.Typer(
    name="speechkit",
    help="Batch transcription and evaluation with speech models (Whisper and speech LLMs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
_state = {"debug": False}
INTERRUPTED = "interrupted: finished results are kept; rerun the same command to resume"


def warn(line: str) -> None:
    """One warning line on stderr."""
    err.print(f"[yellow]warning:[/] {safe(line)}", highlight=False, soft_wrap=True)


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


MediaInputs = Annotated[list[str], typer.Argument(
    help="Media files, directories (searched recursively), glob patterns or JSONL manifests "
         "(speechkit or NeMo style).", show_default=False)]
Task = Annotated[str, typer.Option(help=(
    "Whisper: transcribe or translate (to English). Speech LLMs: asr, st, er, sv, sqa, aac."))]
WordTimestamps = Annotated[bool, typer.Option(
    "--word-timestamps", help="Whisper: also time every word (segments[].words of the "
    "results and of json files; subtitle cues then end at pauses between words).")]
ConditionOnPreviousText = Annotated[bool | None, typer.Option(
    "--condition-on-previous-text/--no-condition-on-previous-text", help=(
        "Whisper, long files: prompt each VAD piece with the text of the piece before it "
        "(openai-whisper's option; no prompt after a piece decoded at a fallback temperature "
        "above 0.5 or flagged as a loop; at most its last 223 tokens). A file's pieces then decode one after "
        "another (different files' pieces still share batches). Default: off, measured more "
        "accurate on long recordings (prompted pieces skipped sentences); files up to 30 s "
        "are one piece and never prompted."), show_default=False)]
Out = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Results JSONL (default: OUTPUT_DIR/transcripts.jsonl).")]
OutputDir = Annotated[Path | None, typer.Option(
    "--output-dir", "-d", help="Where the results and --output-format files go (default: "
    "the folder of --out, else the current folder).")]
OutputFormat = Annotated[str | None, typer.Option(
    "--output-format", "--format", "-f", help="Also write one file per input, named after "
    "it: comma list of srt, vtt, txt, tsv, json, or all.")]
MaxLineWidth = Annotated[int, typer.Option(min=1, help=(
    "srt, vtt: most characters in a subtitle line."))]
MaxLineCount = Annotated[int, typer.Option(min=1, help="srt, vtt: most lines in a subtitle cue.")]
MaxWordsPerLine = Annotated[int | None, typer.Option(min=1, metavar="WORDS", help=(
    "srt, vtt: most words in a subtitle line (default: as many as fit)."), show_default=False)]
AudioStream = Annotated[int | None, typer.Option(
    min=0, help="Which audio stream of each file to use (0 = first).")]
Shard = Annotated[str | None, typer.Option(help=(
    "Run shard K/N of the inputs (K from 0; by id, every N-th) for schedulers without Ray "
    "(a Slurm array, a Kubernetes indexed job); default output transcripts.shard-K-of-N.jsonl; "
    "`speechkit merge` joins the shards' outputs."), show_default=False)]


@app.command()
def transcribe(
    inputs: MediaInputs, model: Model = "whisper-base", task: Task = "transcribe",
    language: Language = None, target_language: TargetLanguage = None, prompt: Prompt = None,
    beam_size: BeamSize = None, max_new_tokens: MaxNewTokens = None,
    word_timestamps: WordTimestamps = False,
    condition_on_previous_text: ConditionOnPreviousText = None, batch_size: BatchSize = 0,
    device: Device = "auto", dtype: Dtype = "auto", quant: Quant = None, engine: Engine = "auto",
    encoder_window: EncoderWindow = "short", threads: Threads = 0,
    lora_scale: LoraScale = None, out: Out = None, output_dir: OutputDir = None,
    fmt: OutputFormat = None, max_line_width: MaxLineWidth = MAX_LINE_CHARS,
    max_line_count: MaxLineCount = MAX_LINES, max_words_per_line: MaxWordsPerLine = None,
    overwrite: Overwrite = False, audio_stream: AudioStream = None, progress: Progress = True,
    lora_gate: LoraGate = None, no_speech_threshold: NoSpeechThreshold = None,
    runner: Runner = "local", address: Address = None, workers: Workers = None,
    gpus: GpusPerWorker = None, shard: Shard = None,
) -> None:
    """Transcribe (or translate) media files in length-sorted batches; results go to JSONL.

    Resumes by default: items already "ok" in the results file are skipped. Exit code 0 when
    every item succeeded, 1 when some failed (their lines say why), 2 for usage errors.

    Without --out, the transcripts are also printed: the text for one file, `FILE: text` per
    file for several.
    """
    from speechkit.commands.options import runtime_options, scale_options
    from speechkit.evaluation.suites import parse_shard
    from speechkit.formats import parse_formats
    from speechkit.models.base import DecodeOptions
    from speechkit.settings import check_task, unused_option_warnings
    from speechkit.transcribe import transcribe_to_jsonl

    runtime = runtime_options(device, dtype, quant, engine, threads, lora_scale, lora_gate=lora_gate,
                              encoder_window=encoder_window)
    scale = scale_options(runner, address, workers, gpus)
    formats = parse_formats(fmt)
    k_n = parse_shard(shard)  # checked before the inputs are read
    subtitles = _subtitle_options(formats, max_line_width, max_line_count, max_words_per_line)
    items = _transcribe_items(inputs, shard, audio_stream)
    check_task(model, task)
    options = DecodeOptions(task=task, language=language, target_language=target_language,
                            beam_size=beam_size, max_new_tokens=max_new_tokens, prompt=prompt,
                            word_timestamps=word_timestamps, no_speech_threshold=no_speech_threshold,
                            condition_on_previous_text=condition_on_previous_text)
    for line in unused_option_warnings(model, runtime, options, batch_size or None):
        warn(line)
    name = "transcripts.shard-{}-of-{}.jsonl".format(*k_n) if k_n else "transcripts.jsonl"
    results_path = out or (output_dir or Path(".")) / name
    output_dir = output_dir or results_path.parent
    summary = transcribe_to_jsonl(
        items, model, options, results_path, runtime=runtime,
        batch_size=batch_size or None, formats=formats, format_dir=output_dir, subtitles=subtitles,
        overwrite=overwrite, console=err, progress=progress,
        echo=out is None, scale=scale)
    raise typer.Exit(0 if summary.failed == 0 else 1)


def _subtitle_options(formats: tuple[str, ...], width: int, lines: int, words: int | None):
    from speechkit.formats import SubtitleOptions

    subtitles = SubtitleOptions(width, lines, words)
    if subtitles != SubtitleOptions() and not {"srt", "vtt"} & set(formats):
        warn("--max-line-width, --max-line-count and --max-words-per-line lay out srt and vtt "
             "files only; add --output-format srt or vtt")
    return subtitles


def _transcribe_items(inputs: list[str], shard: str | None, audio_stream: int | None) -> list:
    """The inputs as items (this shard's), checked to be readable files, `--audio-stream` set."""
    from speechkit.inputs import expand_inputs
    from speechkit.merge import shard_items
    from speechkit.preflight import check_inputs

    items = shard_items(expand_inputs(inputs), shard)
    check_inputs(items)
    if audio_stream is not None:
        for it in items:
            it.meta["audio_stream"] = audio_stream
    return items


def _register_subcommands() -> None:
    from speechkit.commands import bench, checkpoint, convert, evaluation, merge

    bench.register(app)
    merge.register(app)
    evaluation.register(app)
    checkpoint.register(app)
    convert.register(app)
    from speechkit.commands import lips

    lips.register(app)


def _unwrap(text: str) -> str:
    """Docstring paragraphs as single lines, for the terminal to wrap (click's \\b kept)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
                       for p in paragraphs)


def plain_help(command, parent=None) -> None:
    """Help without type placeholders (`<bool>`, `<list[str]>`) and without the docstrings'
    line breaks: flags show no value, options a name (`--model MODEL`), arguments `INPUTS`."""
    ctx = command.context_class(command, parent=parent, info_name=command.name,
                                **command.context_settings)
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if param.metavar is not None:
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.param_type_name == "argument":
            param.metavar = param.name.upper()
            if hasattr(param, "display_type_rich"):  # newer typer: the type beside an argument
                param.display_type_rich = lambda ctx: None
        else:
            long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            param.metavar = long.split("-")[-1].upper()  # --beam-size SIZE, --output-dir DIR
    if command.help:
        command.help = _unwrap(command.help)
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub, ctx)


def _program_name() -> str:
    name = Path(sys.argv[0]).name
    return "python -m speechkit" if name == "__main__.py" else name or "speechkit"


def _watch_ctrl_c() -> list[bool]:
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered (the returned list gets
    an entry), so an error it causes elsewhere is still reported as an interruption. Left
    alone when SIGINT is ignored (a background job) or handled by the caller."""
    seen: list[bool] = []

    def on_sigint(signum: int, frame: object) -> None:
        seen.append(True)
        raise KeyboardInterrupt

    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        signal.signal(signal.SIGINT, on_sigint)
    return seen


def _exit_interrupted() -> None:
    """Say how to resume and exit 130 at once. The results file is already closed (its `with`
    ended as the interrupt passed); exiting now keeps a second Ctrl-C, or the native libraries'
    threads winding down, from turning the exit into a kill by SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    err.print(INTERRUPTED, highlight=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors exit 2 with click's message, user errors print one
    line, Ctrl-C prints how to resume and exits 130; no traceback unless --debug."""
    # Newer typer parses with its own copy of click, older typer with click itself: take the
    # usage-error class from whichever module defines typer.BadParameter.
    click_exception = sys.modules[typer.BadParameter.__module__].ClickException
    keep_freed_memory()  # before any thread starts (see speechkit.heap)
    passive_openmp_waits()  # before torch or CTranslate2 loads (see speechkit.threads)
    _register_subcommands()
    command = typer.main.get_command(app)
    plain_help(command)
    args = sys.argv[1:] if argv is None else list(argv)
    interrupted = _watch_ctrl_c()
    try:
        # make_context + invoke rather than standalone_mode: typer's main turns Ctrl-C into a
        # silent exit 130 and shows usage errors as its own panels.
        with command.make_context(_program_name(), args) as ctx:
            rc = command.invoke(ctx)
    except SpeechkitError as e:
        if _state["debug"]:
            err.print_exception()
        err.print(f"[bold red]error:[/] {safe(e)}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except click_exception as e:
        if e.format_message():  # empty after a rich help page (no_args_is_help)
            e.show()
        sys.exit(e.exit_code)
    except BrokenPipeError:  # the reader went away (`speechkit ... | head`), as click and rich do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        _exit_interrupted()
    except Exception as e:  # anything unforeseen: one line, the traceback behind --debug
        if interrupted:  # a Ctrl-C inside a native module's import surfaces as ImportError
            _exit_interrupted()
        if _state["debug"]:
            raise
        err.print(f"[bold red]error:[/] unexpected {type(e).__name__}: {safe(e)} (rerun with "
                  "--debug for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)

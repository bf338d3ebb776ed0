"""The options shared by commands, declared once with one help text each. Values are checked
and normalised while parsing, so a bad one is a usage error before anything loads."""

from __future__ import annotations

from typing import Annotated

import typer

from speechkit.evaluation.metrics.normalizers import NORMALIZERS
from speechkit.languages import check_language
from speechkit.models.catalogue import names


def language_option(value: str | None) -> str | None:
    """`--language`: Whisper's code for a code or name (`English` -> `en`)."""
    return check_language(value, "--language")


def target_language_option(value: str | None) -> str | None:
    """`--target-language`: Whisper's code for a code or name (`german` -> `de`)."""
    return check_language(value, "--target-language")


def _dtype(value: str) -> str:
    from speechkit.models.registry import check_dtype

    return check_dtype(value)


def _quant(value: str | None) -> str | None:
    from speechkit.settings import check_quant

    return check_quant(value)


def _lora_gate(value: str | None) -> str | None:
    if value is None:  # the default: no speech-LLM (torch) import to check it
        return None
    from speechkit.models.speechllm.prompt_lora import check_gate_mode

    return str(check_gate_mode(value))


def _lora_scale(value: float | None) -> float | None:
    from speechkit.errors import SpeechkitError

    if value is not None and not value > 0:
        raise SpeechkitError(f"--lora-scale must be > 0, got {value:g} (SALMONN trains with 4)")
    return value


def _engine(value: str) -> str:
    from speechkit.models.registry import check_engine

    return check_engine(value)


def _encoder_window(value: str) -> str:
    from speechkit.models.registry import ENCODER_WINDOWS

    if value not in ENCODER_WINDOWS:
        raise typer.BadParameter(f"{value!r}: use one of {', '.join(ENCODER_WINDOWS)}")
    return value


def runtime_options(device: str, dtype: str, quant: str | None, engine: str = "auto",
                    threads: int = 0, lora_scale: float | None = None,
                    lora_gate: str | None = None, encoder_window: str = "short"):
    """`RuntimeOptions` from the command line, the combination checked (e.g. int8 on a GPU,
    cuda without a GPU) before any model loads."""
    from speechkit.models.registry import RuntimeOptions
    from speechkit.settings import check_runtime

    return check_runtime(RuntimeOptions(device, dtype, quant, engine=engine, threads=threads or None,
                                        lora_scale=lora_scale, lora_gate=lora_gate,
                                        encoder_window=encoder_window))


Model = Annotated[str, typer.Option("--model", "-m", help=(
    f"Built-in name ({', '.join(names('whisper'))}; {', '.join(names('speaker-embedding'))} for "
    "sv suites; `speechkit models` lists them), a speechkit checkpoint dir, a local Whisper dir, "
    "a transformers audio-LLM dir (Qwen2-Audio, Voxtral, Audio Flamingo 3) or a Whisper hub id."))]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")]
Dtype = Annotated[str, typer.Option(callback=_dtype, help=(
    "auto (float16 on GPU; on CPU int8 with the ctranslate2 engine, float32 with torch), "
    "float32, float16, bfloat16, or int8 (torch on CPU: dynamic int8 linear layers; faster, but "
    "results can vary with batch composition)."))]
Engine = Annotated[str, typer.Option(callback=_engine, help=(
    "Whisper engine: auto (CTranslate2 for the built-in models on CPU; torch on GPU and for "
    "Whisper directories), torch or ctranslate2."))]
EncoderWindow = Annotated[str, typer.Option(callback=_encoder_window, help=(
    "Whisper on CTranslate2: the encoder reads each clip plus at least 1 s, in 10 s steps up to "
    "30 s (short: the same WER on the benchmark clip sets, about 3x less CPU on short clips), "
    "or always 30 s as Whisper was trained (30s; the torch engine always does)."))]
Threads = Annotated[int, typer.Option(min=0, envvar="SPEECHKIT_THREADS", help=(
    "CPU math threads; 0 = auto: every core, at most 8 (Whisper on CTranslate2 runs many "
    "files on one one-thread model replica per thread, one file on one replica)."))]
Quant = Annotated[str | None, typer.Option(callback=_quant, help=(
    "Speech-LLM and audio-LLM weights: 4bit NF4 (default on GPU), 8bit, bf16, fp16 or fp32 "
    "(default on CPU)."))]
LoraGate = Annotated[str | None, typer.Option(callback=_lora_gate, help=(
    "Speech LLMs with prompt-aware LoRA (WavLLM): prompt (default: the gate computed from the "
    "task prompt), off (no LoRA), or a number used as the gate of every channel. Recorded in "
    "the results."), show_default=False)]
LoraScale = Annotated[float | None, typer.Option(callback=_lora_scale, help=(
    "Speech LLMs: set the LoRA scaling (alpha / r as trained; SALMONN 4) when the LLM loads. "
    "SALMONN's activation tuning lowers it (e.g. 2) to follow instructions beyond its training "
    "tasks. Recorded in the results."), show_default=False)]
BatchSize = Annotated[int, typer.Option(
    min=0, help="Segments per forward pass; 0 = auto (Whisper on CTranslate2: 2 with one math "
                "thread, 8 with more; else 8 on CPU and 32 on GPU).")]
BeamSize = Annotated[int | None, typer.Option(min=1, help=(
    "1 = greedy; >1 = beam search; Whisper falls back to sampling either way when the text "
    "loops or is unlikely. Default: the model's (Whisper 1: on a 2-core CPU beam 5 took "
    "3.7x the time for 0.6 WER points; a checkpoint's speechkit.json decode settings)."),
    show_default=False)]
MaxNewTokens = Annotated[int | None, typer.Option(min=1, help=(
    "Most tokens generated per 30 s segment. Default: the model's (Whisper 224; a "
    "checkpoint's speechkit.json)."), show_default=False)]
Language = Annotated[str | None, typer.Option(
    "--language", "-l", callback=language_option,
    help="Spoken language: a code or English name (en, de, english); default: detected, or "
         "the suite's.")]
TargetLanguage = Annotated[str | None, typer.Option(
    callback=target_language_option,
    help="Target language for speech translation with speech LLMs (de, german).")]
Prompt = Annotated[str | None, typer.Option(help="Override the task prompt (speech LLMs).")]
NoSpeechThreshold = Annotated[float | None, typer.Option(min=0.0, max=1.0, help=(
    "Whisper: drop a window as silence when P(no speech) is above this and its text is "
    "unlikely. Default 0.6 (openai-whisper's); 1 turns the safeguard off."), show_default=False)]
Progress = Annotated[bool, typer.Option(
    help="Show progress: a live bar on a terminal, else a line every 10 s.")]
Normalizer = Annotated[str | None, typer.Option(help=(
    f"Text normalizer for scoring: {', '.join(NORMALIZERS)} (default: the task's or suite's; "
    "asr whisper-en, avsr/vsr lrs3, st none)."))]
Overwrite = Annotated[bool, typer.Option(
    help="Redo the items given even when the results file has them (default: resume, skipping "
         "items already done).")]
Runner = Annotated[str, typer.Option(help=(
    "Where the items run: local (this process) or ray (a Ray cluster: `pip install "
    "'speechkit\\[ray]'`; decoding in CPU tasks, the model in a pool of workers). Not to be "
    "confused with --engine, the Whisper engine each worker runs."))]
Address = Annotated[str | None, typer.Option(help=(
    "--runner ray: the cluster, `auto` (one started here with `ray start`) or "
    "ray://HOST:10001 (Ray Client, e.g. a KubeRay head); default: $RAY_ADDRESS, else a new "
    "local cluster sized to this machine."), show_default=False)]
Workers = Annotated[int | None, typer.Option(min=1, help=(
    "--runner ray: model workers, each loading the model once; default: one per GPU (by "
    "--gpus-per-worker), else one per 2 CPUs."), show_default=False)]
GpusPerWorker = Annotated[float | None, typer.Option("--gpus-per-worker", min=0, metavar="GPUS", help=(
    "--runner ray: GPUs each model worker takes (fractions share a GPU); default: 1 where "
    "the cluster has GPUs, else 0 (CPU workers)."), show_default=False)]


def scale_options(runner: str, address: str | None, workers: int | None,
                  gpus_per_worker: float | None):
    """`ScaleOptions` from the command line, checked (an unknown runner is a usage error); a
    Ray option given to a local run prints a warning line."""
    from speechkit.cli import warn
    from speechkit.scale.options import ScaleOptions

    scale = ScaleOptions(runner, address, workers, gpus_per_worker)
    for line in scale.unused_warnings():
        warn(line)
    return scale

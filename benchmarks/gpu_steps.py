"""The measuring steps of `scripts/gpu-check`: random-weight speech LLMs of the published shapes
(4-bit NF4 against bf16, batch 1 / 8 / 32) and Whisper on the torch engine against faster-whisper.

Each step runs in its own process (the script's `--step`), so one step's crash, timeout or
out-of-memory never stops the others and each one's peak GPU memory is its own. Checkpoints
are written by speechkit's own `checkpoint new` code and loaded by `load_speechllm`, as users
load them; Whisper loads through `load_model` with `engine="torch"`. A row is a dict with the
columns of the table (see COLUMNS); sizes come from `Sizes`, tiny for `--dry-run`.
"""

from __future__ import annotations

import re
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SAMPLE_RATE = 16000
COLUMNS = ("step", "model", "precision", "batch", "peak MB", "tokens/s", "RTFx", "WER %",
           "batched == one-at-a-time", "seconds", "status")
# Llama-AVSR's added tokens (its LLM's embedding matrix is resized for them)
AVSR_TOKENS = ["<pad>", "<audio>", "</audio>", "<video>", "</video>"]
AVSR_AUDIO_RATE = 3  # Whisper frames stacked per LLM token (Llama-AVSR: audio 3-4x)
AVSR_LORA = dict(lora_r=64, lora_alpha=8.0)  # Llama-AVSR: r 64, alpha 8 on q, v
# openai/whisper-large-v3 config.json; the vocabulary stays the tokenizer's (base: 51,865 ids)
WHISPER_LARGE_V3 = dict(d_model=1280, encoder_layers=32, decoder_layers=32,
                        encoder_attention_heads=20, decoder_attention_heads=20,
                        encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=128)
WHISPER_TINY_V3 = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                       decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                       num_mel_bins=128)
RANDOM_WHISPER_SEED = 0


@dataclass(frozen=True)
class Sizes:
    """What one run measures: shapes, items and token counts (GPU run or CPU dry run)."""

    device: str
    llm_shapes: dict[str, dict[str, Any]]  # row label -> shape of benchmarks/speechllm.py or salmonn_shape
    float_quant: str  # bf16 on a GPU; fp32 on a CPU (bf16 matmuls there are slow, not measured)
    batches: tuple[int, ...]  # the first is 1: the one-at-a-time reference
    llm_items: int
    llm_new_tokens: int
    whisper_large: dict[str, int]
    whisper_batch: int
    whisper_items: int  # the LibriVox clips (5 in pocketsphinx-testdata) cycled to this many
    whisper_random_tokens: int  # random Whisper weights: one greedy pass of this many tokens
    faster_whisper_compute: str
    loop_items: int = 5  # LibriVox clips read as Hebrew (repetition loops), decoded together
    loop_temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def sizes(dry_run: bool) -> Sizes:
    """Published shapes on CUDA; tiny ones on the CPU for the dry run."""
    if dry_run:
        # a shared 2-core CPU: few items, small batches; the steps are the GPU run's
        return Sizes(device="cpu", float_quant="fp32", batches=(1, 2, 4), llm_items=4,
                     llm_new_tokens=2, whisper_large=WHISPER_TINY_V3, whisper_batch=4,
                     whisper_items=2,
                     whisper_random_tokens=8, faster_whisper_compute="float32",
                     loop_items=1, loop_temperatures=(0.0,),
                     llm_shapes={"llama-avsr-tiny": {"family": "llama-avsr", "llm": "tiny"},
                                 "salmonn-tiny": {"family": "salmonn", "llm": "tiny"}})
    return Sizes(device="cuda", float_quant="bf16", batches=(1, 8, 32), llm_items=32,
                 llm_new_tokens=32, whisper_large=WHISPER_LARGE_V3, whisper_batch=32,
                 whisper_items=64,
                 whisper_random_tokens=64, faster_whisper_compute="float16",
                 llm_shapes={"llama-avsr-8b": {"family": "llama-avsr", "llm": "8b"},
                             "salmonn-13b": {"family": "salmonn", "llm": "13b"}})


# -- inputs ---------------------------------------------------------------------------------------

def librivox_dir(carried: Path) -> Path | None:
    """The LibriVox clips of Debian's pocketsphinx-testdata: .testdata (fetched by
    scripts/fetch-testdata.sh), $SPEECHKIT_TESTDATA, or the carried copy."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import pocketsphinx_dir

    ps = pocketsphinx_dir()
    for cand in ([ps / "librivox"] if ps else []) + [carried / "pocketsphinx" / "librivox"]:
        if (cand / "transcription").is_file():
            return cand
    return None


def clips(folder: Path) -> list[tuple[str, np.ndarray, str]]:
    """(name, 16 kHz waveform, reference) of each clip, read with the wave module: the files are
    16 kHz mono 16-bit PCM, and a bare GPU machine may have no ffmpeg."""
    out = []
    for line in (folder / "transcription").read_text().splitlines():
        m = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        if not m:
            continue
        with wave.open(str(folder / f"{m.group(2)}.wav"), "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                raise ValueError(f"{m.group(2)}.wav: not 16 kHz mono 16-bit PCM")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        out.append((m.group(2), pcm.astype(np.float32) / 32768.0, " ".join(m.group(1).split())))
    return out


def cycled(items: list[tuple[str, np.ndarray, str]], n: int) -> list[tuple[str, np.ndarray, str]]:
    """The clips repeated (or cut) to `n` items, each under its own key."""
    return [(f"{k}-{items[k % len(items)][0]}", *items[k % len(items)][1:]) for k in range(n)]


# -- speech LLMs ----------------------------------------------------------------------------------

def llm_tokenizer(carried: Path) -> str:
    """The tokenizer random LLMs use: the carried copy (scripts/gpu-prepare saves it; a bare
    machine has no other), else the built-in SmolLM2's."""
    found = carried / "llm-tokenizer"
    return str(found.resolve()) if found.is_dir() else "smollm2-135m"


def write_llm_checkpoint(out: Path, label: str, shape: dict[str, Any], sz: Sizes,
                         carried: Path) -> str:
    """A random-weight checkpoint of the shape, through speechkit's checkpoint writers."""
    from salmonn_shape import salmonn_shaped
    from speechllm import LLAMA_8B, WHISPER_LARGE

    from speechkit.models.speechllm import new_checkpoint

    tokenizer = llm_tokenizer(carried)
    if shape["family"] == "salmonn":
        tiny = shape["llm"] == "tiny"
        salmonn_shaped(out, shape["llm"], "tiny" if tiny else "full", tokenizer)
        return f"{label}: Whisper large-v2 + BEATs, Q-Former, Vicuna-{shape['llm']} shape, LoRA r 8"
    tiny = shape["llm"] == "tiny"
    llm_cfg = (dict(LLAMA_8B, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, intermediate_size=128, vocab_size=49152)
               if tiny else LLAMA_8B)
    enc_cfg = dict(WHISPER_LARGE, d_model=32, encoder_layers=2, encoder_attention_heads=2,
                   encoder_ffn_dim=64) if tiny else WHISPER_LARGE
    new_checkpoint(out, audio_encoder="random", encoder_kind="whisper", encoder_config=enc_cfg,
                   bridge="llama-avsr", rate=AVSR_AUDIO_RATE, pooling="stack",
                   hidden_dim=llm_cfg["hidden_size"], llm="random", llm_config_dict=llm_cfg,
                   tokenizer=tokenizer, template="llama-avsr", added_tokens=AVSR_TOKENS,
                   **AVSR_LORA)
    return f"{label}: Whisper large-v3 encoder, Llama-AVSR projector (stack 3), Llama-3.1-8B shape, LoRA r 64"


def llm_rows(label: str, checkpoint: Path, quant: str, sz: Sizes, carried: Path) -> list[dict]:
    """One shape in one precision: batch 1 / 8 / 32 over the same items; each batched run's
    token ids against the one-at-a-time run's."""
    import torch
    from speechllm import run

    from speechkit.models.base import DecodeOptions
    from speechkit.models.speechllm import load_speechllm

    cuda = sz.device.startswith("cuda")
    t0 = time.perf_counter()
    model = load_speechllm(str(checkpoint), device=sz.device, quant=quant)
    load_s = time.perf_counter() - t0
    audio = [a for _, a, _ in clips(librivox_dir(carried))]
    audios = [audio[i % len(audio)] for i in range(sz.llm_items)]
    options = DecodeOptions(task="asr", beam_size=1, max_new_tokens=sz.llm_new_tokens)
    run(model, audios[:1], options, 1, sz.device)  # warm-up: kernels, allocator
    rows, single = [], None
    for b in sz.batches:
        t = time.perf_counter()
        r = run(model, audios, options, b, sz.device)
        single = single or r
        peak = r["gpu"] if cuda else r["rss"]
        rows.append({"model": label, "precision": quant, "batch": b, "peak MB": peak / 2**20,
                     "tokens/s": r["tok_s"], "RTFx": r["rtfx"],
                     "batched == one-at-a-time": r["ids"] == single["ids"],
                     "seconds": time.perf_counter() - t})
    rows[0]["seconds"] += load_s  # the load is the first row's
    del model
    if cuda:
        torch.cuda.empty_cache()
    return rows


# -- Whisper ----------------------------------------------------------------------------------------

def whisper_source(name: str, sz: Sizes, work: Path, carried: Path) -> tuple[str, bool]:
    """(model directory or built-in name, real weights?). `base`: the built-in whisper-base
    when its weight packages are installed, else random weights in its shape; `large-v3`:
    random weights in large-v3's shape (tiny in the dry run), written once into `work`."""
    from speechkit.errors import SpeechkitError
    from speechkit.models.catalogue import builtin

    try:
        builtin("whisper-base").weight_files()
        if name == "base":
            return "whisper-base", True
    except SpeechkitError:
        pass
    processor = carried / "whisper-processor"  # saved by scripts/gpu-prepare
    if not (processor / "tokenizer.json").is_file():
        processor = builtin("whisper-base").load()  # its config and tokenizer, converted once
    out = work / f"whisper-{name}-random"
    if not (out / "config.json").is_file():
        _random_whisper(Path(processor), {} if name == "base" else sz.whisper_large, out)
    return str(out), False


def _random_whisper(processor_dir: Path, shape: dict[str, int], out: Path) -> None:
    """A transformers Whisper directory with seeded random weights in `shape` (the config of
    `processor_dir` otherwise) and that directory's tokenizer and generation config."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    config = WhisperConfig.from_pretrained(processor_dir)
    for key, value in shape.items():
        setattr(config, key, value)
    torch.manual_seed(RANDOM_WHISPER_SEED)
    model = WhisperForConditionalGeneration(config).half()
    model.generation_config = GenerationConfig.from_pretrained(processor_dir)
    model.save_pretrained(out)
    proc = WhisperProcessor.from_pretrained(processor_dir)
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    WhisperProcessor(feature_extractor=features, tokenizer=proc.tokenizer).save_pretrained(out)
    features.save_pretrained(out)  # preprocessor_config.json, which faster-whisper reads


def whisper_torch_rows(name: str, sz: Sizes, work: Path, carried: Path) -> list[dict]:
    """Whisper on the torch engine, batched, length-sorted: RTFx, and WER with real weights.
    Real weights decode as users decode (`generate`, with its fallback); random weights take
    one greedy pass of a fixed length (the fallback would decode random text six times)."""
    import torch
    from transcribe import wer

    from speechkit.models.base import DecodeOptions, audio_inputs
    from speechkit.models.registry import RuntimeOptions, load_model

    source, real = whisper_source(name, sz, work, carried)
    cuda = sz.device.startswith("cuda")
    dtype = "float16" if cuda else "float32"
    t0 = time.perf_counter()
    model = load_model(source, RuntimeOptions(device=sz.device, dtype=dtype, engine="torch"))
    load_s = time.perf_counter() - t0
    items = cycled(clips(librivox_dir(carried)), sz.whisper_items)
    order = sorted(range(len(items)), key=lambda i: len(items[i][1]))
    texts: dict[str, str] = {}
    options = DecodeOptions(task="transcribe", language="en", beam_size=1)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for s in range(0, len(order), sz.whisper_batch):
        idx = order[s:s + sz.whisper_batch]
        audios = [items[i][1] for i in idx]
        if real:
            hyps = model.generate(audio_inputs(audios), options)
            texts.update((items[i][0], h.text) for i, h in zip(idx, hyps, strict=True))
        else:
            dec = model.decoder
            enc = dec.encode(model.features(audios).to(sz.device, dtype=model.dtype))
            dec.decode(enc, [dec.tok.prompt("en", "transcribe")] * len(idx), 1,
                       sz.whisper_random_tokens, temperatures=(0.0,))
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    audio_s = sum(len(a) for _, a, _ in items) / SAMPLE_RATE
    peak = torch.cuda.max_memory_allocated() if cuda else _rss()
    return [{"model": whisper_label(name, sz) + ("" if real else " (random weights)"),
             "precision": dtype, "batch": sz.whisper_batch, "peak MB": peak / 2**20,
             "RTFx": audio_s / wall, "WER %": _wer(wer, items, texts) if real else "n/a (random)",
             "seconds": wall + load_s}]


def whisper_loops_rows(name: str, sz: Sizes, work: Path, carried: Path) -> list[dict]:
    """The torch engine on LibriVox clips read as Hebrew, which run into repetition loops and
    fall back through the temperatures: seconds and decoder passes with repetition-loop
    drafts and without (whisper_torch.DRAFT_TOKENS), and whether the tokens agree."""
    import torch

    import speechkit.models.whisper_torch as engine
    from speechkit.models.registry import RuntimeOptions, load_model

    source, real = whisper_source(name, sz, work, carried)
    cuda = sz.device.startswith("cuda")
    dtype = "float16" if cuda else "float32"
    model = load_model(source, RuntimeOptions(device=sz.device, dtype=dtype, engine="torch"))
    audios = [a for _, a, _ in clips(librivox_dir(carried))[:sz.loop_items]]
    dec = model.decoder
    prompt = dec.tok.prompt("he", "transcribe") if dec.tok.languages else dec.tok.prompt(None, "")
    passes = [0]
    hook = model.model.model.decoder.embed_tokens.register_forward_hook(
        lambda *_: passes.__setitem__(0, passes[0] + 1))
    rows, tokens, drafts = [], [], engine.DRAFT_TOKENS
    try:
        for n_draft in (drafts, 0):
            engine.DRAFT_TOKENS, passes[0] = n_draft, 0
            with torch.inference_mode():
                enc = dec.encode(model.features(audios).to(sz.device, dtype=model.dtype))
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                out = dec.decode(enc, [prompt] * len(audios), 1, 224, temperatures=sz.loop_temperatures)
                if cuda:
                    torch.cuda.synchronize()
            wall = time.perf_counter() - start
            tokens.append([d.tokens for d in out])
            rows.append({"model": f"{whisper_label(name, sz)}{'' if real else ' (random weights)'}, "
                                  f"read as Hebrew, drafts {'on' if n_draft else 'off'}: "
                                  f"{passes[0]} decoder passes",
                         "precision": dtype, "batch": len(audios), "seconds": wall})
    finally:
        engine.DRAFT_TOKENS = drafts
        hook.remove()
    rows[0]["status"] = "ok" if tokens[0] == tokens[1] else "ok; tokens differ from drafts off"
    return rows


def faster_whisper_rows(name: str, sz: Sizes, work: Path, carried: Path) -> list[dict]:
    """faster-whisper (CTranslate2) on the same clips and device, one clip at a time as its
    `transcribe` runs: greedy, no VAD. Random weights are converted to CTranslate2 first."""
    import importlib.util

    if importlib.util.find_spec("faster_whisper") is None:
        return [{"model": f"faster-whisper {name}", "status": "not installed (the `bench` extra)"}]
    from faster_whisper import WhisperModel
    from transcribe import wer

    source, real = whisper_source(name, sz, work, carried)
    if real:
        from speechkit.models.builtins import ct2_model_dir

        ct2_dir = ct2_model_dir(source)
    else:
        import ctranslate2

        ct2_dir = work / f"whisper-{name}-random-ct2"
        if not (ct2_dir / "model.bin").is_file():
            # faster-whisper reads the tokenizer and the mel count from the model folder
            ctranslate2.converters.TransformersConverter(
                source, copy_files=["tokenizer.json", "preprocessor_config.json"]
            ).convert(str(ct2_dir), force=True)
    device = "cuda" if sz.device.startswith("cuda") else "cpu"
    t0 = time.perf_counter()
    model = WhisperModel(str(ct2_dir), device=device, compute_type=sz.faster_whisper_compute)
    load_s = time.perf_counter() - t0
    items = cycled(clips(librivox_dir(carried)), sz.whisper_items)
    extra = {} if real else {"max_new_tokens": sz.whisper_random_tokens, "temperature": 0.0}
    texts = {}
    start = time.perf_counter()
    for key, audio, _ in items:
        segs, _ = model.transcribe(audio, language="en", beam_size=1, vad_filter=False,
                                   condition_on_previous_text=False, **extra)
        texts[key] = "".join(s.text for s in segs).strip()
    wall = time.perf_counter() - start
    audio_s = sum(len(a) for _, a, _ in items) / SAMPLE_RATE
    return [{"model": "faster-whisper " + whisper_label(name, sz) + ("" if real else " (random weights)"),
             "precision": sz.faster_whisper_compute, "batch": 1,
             "peak MB": None if device == "cuda" else _rss() / 2**20,  # CTranslate2's own allocator
             "RTFx": audio_s / wall, "WER %": _wer(wer, items, texts) if real else "n/a (random)",
             "seconds": wall + load_s}]


def whisper_label(name: str, sz: Sizes) -> str:
    tiny = name != "base" and sz.whisper_large is WHISPER_TINY_V3
    return f"whisper-{name}" + (" (tiny, 128 mels)" if tiny else "")


def _wer(wer_fn: Any, items: list[tuple[str, np.ndarray, str]], texts: dict[str, str]) -> float:
    """Corpus WER after the Whisper English normalizer (benchmarks/transcribe.py's)."""
    return wer_fn([{"path": k, "reference": ref} for k, _, ref in items], texts)


def _rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

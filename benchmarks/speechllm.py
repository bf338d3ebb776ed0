"""Speech-LLM throughput: one item at a time (how reference codebases run) vs speechkit batches.

Same checkpoint, same inputs, one process; the outputs must be identical. Prints RTFx (audio
seconds / wall seconds), generated tokens/s, peak memory and the speedup.

    python benchmarks/speechllm.py                                  # CPU: whisper-base + SmolLM2
    python benchmarks/speechllm.py --items 8 --max-new-tokens 16 --quant 4bit
    python benchmarks/speechllm.py --shape llama-8b --encoder-shape whisper-large \\
        --device cuda --items 64 --batch-size 32                    # random weights, 4-bit, GPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEV_ASR = ROOT.parent / "shared" / "data" / "dev" / "asr_en"
SAMPLE_RATE = 16000
RSS_POLL_S = 0.05  # RSS sampling period for the peak
# Llama-3.1-8B (meta-llama/Llama-3.1-8B config.json)
LLAMA_8B = dict(model_type="llama", hidden_size=4096, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336,
                vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
# Whisper large-v3 encoder (openai/whisper-large-v3 config.json)
WHISPER_LARGE = dict(model_type="whisper", d_model=1280, encoder_layers=32,
                     encoder_attention_heads=20, encoder_ffn_dim=5120, num_mel_bins=128,
                     max_source_positions=1500, decoder_layers=1, decoder_attention_heads=20,
                     decoder_ffn_dim=64)


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled)."""

    def __enter__(self) -> PeakRSS:
        self.peak = psutil.Process().memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self) -> None:
        proc = psutil.Process()
        while not self._stop.wait(RSS_POLL_S):
            self.peak = max(self.peak, proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, psutil.Process().memory_info().rss)


def make_checkpoint(args: argparse.Namespace, out: Path) -> None:
    """A fresh checkpoint of the asked shapes (random weights for the big shapes)."""
    from speechkit.models.speechllm import new_checkpoint

    big_enc = args.encoder_shape == "whisper-large"
    big_llm = args.shape == "llama-8b"
    new_checkpoint(out, audio_encoder="random" if big_enc else args.encoder_shape,
                   encoder_kind="whisper" if big_enc else None,
                   encoder_config=WHISPER_LARGE if big_enc else None,
                   llm="random" if big_llm else "smollm2-135m",
                   llm_config_dict=LLAMA_8B if big_llm else None,
                   tokenizer="smollm2-135m" if big_llm else None, lora_r=args.lora_r,
                   template="salmonn" if big_llm else None)


def inputs(n: int) -> list[np.ndarray]:
    """Real speech (cycled): the dev set when present, else pocketsphinx-testdata, else
    deterministic noise of varied length."""
    from speechkit.media.ffmpeg import decode_audio

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import pocketsphinx_dir

    ps = pocketsphinx_dir()
    files = sorted(DEV_ASR.glob("*.wav")) or (
        sorted((ps / "librivox").glob("*.wav")) + sorted((ps / "cards").glob("*.wav")) if ps else [])
    if files:
        clips = [decode_audio(str(f)) for f in files]
    else:
        rng = np.random.default_rng(0)
        clips = [0.1 * rng.standard_normal(int(s * SAMPLE_RATE)).astype(np.float32)
                 for s in (2.0, 5.0, 9.0, 14.0)]
    return [clips[i % len(clips)] for i in range(n)]


def run(model, audios, options, batch_size: int, device: str) -> dict:
    """Decode in length-sorted batches; wall time, tokens, peak memory, ids in input order."""
    from speechkit.models.base import audio_inputs

    order = sorted(range(len(audios)), key=lambda i: len(audios[i]))
    tokens: dict[int, list[int]] = {}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:
        start = time.perf_counter()
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            model.generate(audio_inputs([audios[i] for i in idx]), options)
            tokens.update(zip(idx, model.last_tokens, strict=True))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    gpu = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    ids = [tokens[i] for i in range(len(audios))]
    audio_s = sum(len(a) for a in audios) / SAMPLE_RATE
    n_tok = sum(len(t) for t in ids)
    return {"wall": wall, "rtfx": audio_s / wall, "tok_s": n_tok / wall, "tokens": n_tok,
            "rss": rss.peak, "gpu": gpu, "ids": ids}


def main() -> None:
    from speechkit.models.catalogue import names

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", choices=["smollm2", "llama-8b"], default="smollm2")
    p.add_argument("--encoder-shape", choices=[*names("whisper"), "whisper-large"],
                   default="whisper-base")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quant", default=None, help="4bit, 8bit, bf16, fp32 (default: 4bit on "
                   "CUDA, fp32 on CPU; llama-8b: 4bit)")
    p.add_argument("--items", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--beam-size", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="runs per mode; medians are printed")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--checkpoint", type=Path, help="Use this checkpoint instead of a new one.")
    args = p.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    quant = args.quant or ("4bit" if args.shape == "llama-8b" else None)

    from speechkit.models.base import DecodeOptions
    from speechkit.models.speechllm import load_speechllm

    with tempfile.TemporaryDirectory() as tmp:
        ck = args.checkpoint or Path(tmp) / "ck"
        if args.checkpoint is None:
            make_checkpoint(args, ck)
        t0 = time.perf_counter()
        model = load_speechllm(str(ck), device=args.device, quant=quant)
        load_s = time.perf_counter() - t0
    audios = inputs(args.items)
    options = DecodeOptions(task="asr", beam_size=args.beam_size,
                            max_new_tokens=args.max_new_tokens)
    run(model, audios[:1], options, 1, args.device)  # warm-up
    singles, batches = [], []
    for _ in range(max(1, args.repeats)):  # interleaved, so machine noise hits both modes
        singles.append(run(model, audios, options, 1, args.device))
        batches.append(run(model, audios, options, args.batch_size, args.device))
    single, batched = _median(singles), _median(batches)
    assert all(r["ids"] == single["ids"] for r in singles + batches), \
        "batched outputs differ from one-at-a-time outputs"

    audio_s = sum(len(a) for a in audios) / SAMPLE_RATE
    print(f"device {args.device} ({torch.get_num_threads()} threads), LLM {args.shape} "
          f"{model.quant}, encoder {args.encoder_shape}, {args.items} items, {audio_s:.1f} s "
          f"audio, beam {args.beam_size}, max {args.max_new_tokens} new tokens, "
          f"model load {load_s:.1f} s")
    print(f"{'mode':<16}{'wall s':>8}{'RTFx':>8}{'tok/s':>8}{'tokens':>8}{'peak RSS MB':>13}"
          f"{'peak GPU MB':>13}")
    for name, r in (("one at a time", single), (f"batch {args.batch_size}", batched)):
        gpu = f"{r['gpu'] / 2**20:,.0f}" if r["gpu"] is not None else "-"
        print(f"{name:<16}{r['wall']:>8.2f}{r['rtfx']:>8.2f}{r['tok_s']:>8.1f}{r['tokens']:>8}"
              f"{r['rss'] / 2**20:>13,.0f}{gpu:>13}")
    print(f"outputs identical: yes; speedup (batched / one at a time, median of "
          f"{len(singles)}): {batched['tok_s'] / single['tok_s']:.2f}x")


def _median(runs: list[dict]) -> dict:
    """The run with the median wall time (its figures are printed), peak memory over all."""
    mid = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
    return {**mid, "rss": max(r["rss"] for r in runs),
            "gpu": max(r["gpu"] for r in runs) if mid["gpu"] is not None else None}


if __name__ == "__main__":
    main()

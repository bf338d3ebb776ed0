"""speechkit against a family's own published code, token for token, on tiny random weights.

    python benchmarks/parity.py salmonn --official /path/to/SALMONN \\
        --official-python /path/to/salmonn-env/bin/python
    python benchmarks/parity.py llama-avsr --official /path/to/Llama-AVSR \\
        --official-python /path/to/llama-avsr-env/bin/python \\
        [--official-set compression_mode=avg-pooling layernorm_projector=true \\
         --convert-args "--compression-mode avg-pooling --downsample-ratio-audio 3"]
    python benchmarks/parity.py wavllm --official /path/to/SpeechT5/WavLLM \
        --official-python /path/to/wavllm-env/bin/python

The official environment needs the official requirements, relaxed where they do not install
on Python 3.11 (any torch that runs there; torchaudio's pure-Python `compliance.kaldi` is
enough for SALMONN's BEATs); Llama-AVSR runs audio only, without fairseq: its video path loads
AV-HuBERT with fairseq's `load_model_ensemble_and_task`, and the fairseq its checkout carries
(1.0.0a0, with hydra-core 1.0 and omegaconf 2.0) does not import on Python 3.11 (a dataclass
field with a mutable default). WavLLM runs inside its own fairseq submodule (0.12), used from
source (no build: the C++/Cython extensions are not needed for inference): transformers
4.32.1, numpy < 2, sentencepiece, protobuf < 5, soundfile, hydra-core < 1.1, omegaconf < 2.1,
bitarray, sacrebleu, regex, cffi, tqdm.

Two Python environments, files between them. The official code pins an old transformers
(SALMONN 4.28, Llama-AVSR 4.43, WavLLM 4.32) that speechkit cannot import beside its own, so:
1. the official side (`benchmarks/parity_<family>.py`, run by --official-python with the
   checkout first on its path, nothing of speechkit imported) builds tiny random parts, a model
   whose every trainable tensor is random (LoRA B too), and saves the checkpoint as the
   official training code writes it (SALMONN: `Runner.save_checkpoint`; Llama-AVSR: a
   Lightning checkpoint's `state_dict` averaged by `ensemble_original`; WavLLM: fairseq's
   `Trainer.state_dict`);
2. this script converts that file with `speechkit convert <family>` (a subprocess, as a user
   runs it), which is the check that the checkpoint as training writes it converts;
3. the official side decodes each clip with the official inference code (greedy and the official
   beam; WavLLM greedy only: its decoder fails with a beam above 1) and writes ids (json) and
   first-step logits and prefix embeddings (safetensors);
4. this script decodes the same clips with speechkit and prints the table. The random LLM is
   made to write EOS on about 5% of its steps, so answers end at different lengths (which
   tells beam search's scoring and stopping rules apart: SALMONN's 40 s clip stops after 154
   tokens under today's transformers' rule, where SALMONN's 4.28 goes on to 200 and keeps a
   cut hypothesis; speechkit runs 4.28's rules for SALMONN).

Clips: real speech (the LibriVox recordings of `.testdata/pocketsphinx/librivox`) cut and
joined with ffmpeg to 0.3 s, 1 s, 10.4 s and 40.1 s, 16-bit 16 kHz mono. Past 30 s the
SALMONN and Llama-AVSR code cuts and speechkit goes on in windows (by design). Their long
clip's row compares the prefix embeddings of speechkit's first window with the official input's,
both given the whole clip; its logits and ids are both sides' on the clip cut at 30 s. WavLLM
reads the whole clip (Whisper in 30 s chunks, WavLM whole), and so does its row.

SALMONN adds a `[PAD]` token: the official code gives it a fresh random row at every load
(`resize_token_embeddings`), speechkit the mean row. The official side is given speechkit's
`[PAD]` input and output rows after loading, so both decode the same model; logits are compared
over the whole vocabulary. The official code is never copied here: it is imported from --official.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LIBRIVOX = ROOT / ".testdata" / "pocketsphinx" / "librivox"
# LLaMA's kind of SentencePiece model and the Llama-3.2 tokenizer (scripts/fetch-tokenizers.sh)
SENTENCEPIECE = ROOT / ".testdata" / "tokenizers" / "sentencepiece" / "tokenizer.model"
LLAMA3 = ROOT / ".testdata" / "tokenizers" / "llama3"
RECORDING = "sense_and_sensibility_01_austen_64kb-{}.wav"
# name -> (recordings joined in order, start s, duration s or None for all)
CLIPS = {"0.3s": (["0870"], 1.0, 0.3), "1s": (["0870"], 1.0, 1.0),
         "10s": (["0870", "0930"], 0.0, None),
         "40s": (["0870", "0880", "0890", "0920", "0930", "0870", "0890", "0880"], 0.0, None)}
OFFICIAL_MAX_S = 30  # SALMONN: prepare_one_sample cuts at 30 s; Llama-AVSR: Whisper's 1500 frames
SAMPLE_RATE = 16000
WAVLLM_ASR = ("Based on the attached audio, generate a comprehensive text transcription of the "
              "spoken content.")  # WavLLM test_data/asr.tsv
PAD = "[PAD]"  # SALMONN's added pad token: speechkit's row is given to the official model


@dataclass(frozen=True)
class Family:
    """How one family's checkpoint is built, converted and decoded."""

    official_script: str
    build_args: tuple[str, ...]  # the tokenizer its tiny LLM uses
    convert_args: tuple[str, ...]  # `speechkit convert` options, {name} from the parts' json
    beam: int | None  # the official decode config's beam size (None: no official beam)
    max_new_tokens: int  # and its token budget
    prompt: str
    cuts_long_audio: bool = True  # the official input stops at OFFICIAL_MAX_S


FAMILIES = {
    "salmonn": Family("parity_salmonn.py", ("--sp", str(SENTENCEPIECE)),
                      ("salmonn", "--ckpt", "{ckpt}", "--whisper", "{whisper}", "--beats", "{beats}",
                       "--llm", "{llm}"),
                      beam=4, max_new_tokens=200,  # configs/decode_config.yaml
                      prompt="Recognize the speech and give me the transcription."),  # its ASR prompt
    "llama-avsr": Family("parity_llama_avsr.py", ("--llama3", str(LLAMA3)),
                         ("llama-avsr", "--ckpt", "{ckpt}", "--llm", "{llm}"),
                         beam=15, max_new_tokens=32,  # eval.py --num-beams, --max-dec-tokens
                         prompt="Transcribe speech to text."),  # eval.py --prompt-audio
    "wavllm": Family("parity_wavllm.py", ("--prompt", WAVLLM_ASR),
                     ("wavllm", "--ckpt", "{ckpt}", "--whisper", "{whisper}", "--wavlm", "{wavlm}",
                      "--llm", "{llm}"),
                     beam=None,  # fails above 1; its own script samples (--sampling --beam 1)
                     max_new_tokens=512,  # inference_sft.sh --max-len-b 512
                     prompt=WAVLLM_ASR,
                     cuts_long_audio=False),  # Whisper in 30 s chunks, WavLM on the whole clip
}


def make_clips(out: Path) -> dict[str, Path]:
    """The four clips, cut and joined by ffmpeg from the LibriVox recordings."""
    from speechkit.media.ffmpeg import ffmpeg_exe

    out.mkdir(parents=True, exist_ok=True)
    clips = {}
    for name, (parts, start, seconds) in CLIPS.items():
        inputs = [a for p in parts for a in ("-i", str(LIBRIVOX / RECORDING.format(p)))]
        joined = "".join(f"[{i}:a]" for i in range(len(parts))) + f"concat=n={len(parts)}:v=0:a=1"
        cut = ["-ss", str(start)] + (["-t", str(seconds)] if seconds else [])
        clips[name] = out / f"clip_{name.replace('.', '_')}.wav"
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", *inputs, "-filter_complex",
                        joined, *cut, "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le",
                        str(clips[name])], check=True)
    return clips


def first_30_s(clip: Path) -> Path:
    """The clip cut at the official limit (a file for both sides)."""
    from speechkit.media.ffmpeg import ffmpeg_exe

    cut = clip.with_name(f"{clip.stem}_first{OFFICIAL_MAX_S}s.wav")
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(clip), "-t",
                    str(OFFICIAL_MAX_S), "-c:a", "pcm_s16le", str(cut)], check=True)
    return cut


def official(python: str, family: Family, repo: Path, *args: str) -> None:
    """One step of the official side, in the official environment."""
    script = Path(__file__).with_name(family.official_script)
    subprocess.run([python, str(script), *args, "--official", str(repo)], check=True,
                   cwd=tempfile.gettempdir())


def convert(family: Family, parts: dict[str, str], out: Path, extra: list[str]) -> str:
    """`speechkit convert <family>` on the saved checkpoint, as a user runs it."""
    args = [a.format(**parts) for a in family.convert_args] + extra
    done = subprocess.run([sys.executable, "-m", "speechkit", "convert", *args, "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"convert refused the official checkpoint:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


@torch.inference_mode()
def speechkit_side(model, audio, family: Family, max_new_tokens: int) -> dict:
    """First-step logits and prefix embeddings of one clip, then greedy and beam ids."""
    from speechkit.models.base import DecodeOptions
    from speechkit.models.speechllm.prompts import prompt_ids

    ids = prompt_ids(model.spec.prompt, family.prompt, model.tokenizer)
    embeds = model.prompt_embeds([{"audio": audio}], [ids])[0]
    gate = model.prompt_lora.gated([family.prompt], model.tokenizer) if model.prompt_lora else nullcontext()
    with gate:  # WavLLM: the LoRA weighted by the prompt's gate, as generate runs it
        logits = model.llm(inputs_embeds=embeds[None]).logits[0, -1].float()
    out = {"embeds": embeds.float(), "logits": logits}
    runs = [("greedy", 1)] + ([("beam", family.beam)] if family.beam else [])
    for name, beam in runs:
        options = DecodeOptions(task="asr", prompt=family.prompt, beam_size=beam,
                                max_new_tokens=max_new_tokens)
        model.generate([{"audio": audio}], options)
        out[name] = model.last_tokens[0]
    return out


def answer(ids: list[int], eos: set[int]) -> list[int]:
    """Generated ids up to the first EOS (the official sides write the generated ids only)."""
    return ids[:next((i for i, t in enumerate(ids) if t in eos), len(ids))]


def compare(name: str, off: dict, ours: dict, long_ours: dict | None) -> dict:
    """One table row: prefix embeddings, first-step logits (the whole vocabulary), greedy and
    beam ids."""
    shared = min(off["logits"].shape[0], ours["logits"].shape[0])
    logit = float((off["logits"][:shared] - ours["logits"][:shared]).abs().max())
    emb_ours = (long_ours or ours)["embeds"]
    # the long clip: the rows up to the end of the first window (the text after the speech
    # follows the last window in speechkit's prefix)
    rows = len(off["embeds"]) - _text_after(ours["embeds"], emb_ours) if long_ours else len(off["embeds"])
    same_shape = long_ours is not None or off["embeds"].shape == emb_ours.shape
    embed = float((off["embeds"][:rows] - emb_ours[:rows]).abs().max()) if same_shape else None
    return {"clip": name, "prefix": f"{len(off['embeds'])}/{len(emb_ours)}", "embed": embed,
            "logit": logit, "greedy": off["greedy"] == ours["greedy"],
            "greedy_split": _split(off["greedy"], ours["greedy"], off.get("greedy_gaps")),
            "beam": off["beam"] == ours["beam"] if "beam" in off else None,
            "n_greedy": f"{len(off['greedy'])}/{len(ours['greedy'])}",
            "n_beam": f"{len(off['beam'])}/{len(ours['beam'])}" if "beam" in off else "-"}


def _split(off: list[int], ours: list[int], gaps: list[float] | None) -> dict | None:
    """Where two answers part, and the official gap between its two best logits there (a gap
    within the two sides' logit difference is a near tie, not a different model)."""
    if off == ours or gaps is None:
        return None
    shared = min(len(off), len(ours))
    step = next((i for i in range(shared) if off[i] != ours[i]), shared)
    return {"step": step, "official_top2_gap": gaps[step] if step < len(gaps) else None}


def _text_after(a: torch.Tensor, b: torch.Tensor) -> int:
    """Rows at the end of two prefixes that are the same text embeddings (bit for bit), i.e.
    what follows the speech in both."""
    n = 0
    while n < min(len(a), len(b)) and torch.equal(a[-1 - n], b[-1 - n]):
        n += 1
    return n


def table(family: str, rows: list[dict]) -> str:
    head = ("| family | clip | prefix rows off/sk | max abs embed diff | max abs logit diff "
            "| greedy ids same | beam ids same | greedy tokens off/sk | beam tokens off/sk |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        embed = "shape differs" if r["embed"] is None else f"{r['embed']:.1e}"
        lines.append(f"| {family} | {r['clip']} | {r['prefix']} | {embed} | {r['logit']:.1e} | "
                     f"{_greedy(r)} | {_same(r['beam'])} | "
                     f"{r['n_greedy']} | {r['n_beam']} |")
    return "\n".join(lines)


def _greedy(row: dict) -> str:
    split = row.get("greedy_split")
    if row["greedy"] or not split or split["official_top2_gap"] is None:
        return _same(row["greedy"])
    return f"NO from step {split['step']} (official top-2 gap {split['official_top2_gap']:.1e})"


def _same(flag: bool | None) -> str:
    return "-" if flag is None else "yes" if flag else "NO"


@torch.inference_mode()
def prefix_embeds(model, audio, family: Family) -> dict:
    """The prefix embeddings speechkit builds for a whole clip (windows past 30 s)."""
    from speechkit.models.speechllm.prompts import prompt_ids

    ids = prompt_ids(model.spec.prompt, family.prompt, model.tokenizer)
    return {"embeds": model.prompt_embeds([{"audio": audio}], [ids])[0].float()}


def pad_rows(model, out: Path) -> Path | None:
    """SALMONN's `[PAD]` input and output rows as speechkit has them, written for the official
    side to load in place of the random rows its `resize_token_embeddings` gives."""
    from safetensors.torch import save_file

    if PAD not in model.tokenizer.get_vocab():
        return None
    pad = model.tokenizer.convert_tokens_to_ids(PAD)
    llm = model.llm
    save_file({"id": torch.tensor([pad]),
               "input": llm.get_input_embeddings().weight[pad].float().contiguous(),
               "output": llm.get_output_embeddings().weight[pad].float().contiguous()}, str(out))
    return out


def read_official(folder: Path, clip: Path, eos: set[int]) -> dict:
    from safetensors.torch import load_file

    ids = json.loads(path.read_text()) if (path := folder / f"{clip.stem}.json").is_file() else {}
    tensors = load_file(str(folder / f"{clip.stem}.safetensors"))
    gaps = {k: v for k, v in ids.items() if k.endswith("_gaps")}
    return {**tensors, **gaps, **{k: answer(v, eos) for k, v in ids.items() if k not in gaps}}


def parity(name: str, repo: Path, python: str, work: Path, max_new_tokens: int | None,
           official_set: list[str], convert_args: list[str]) -> list[dict]:
    """Build and save officially, convert, decode both ways; one row per clip."""
    from speechkit.media.ffmpeg import decode_audio
    from speechkit.models.speechllm import load_speechllm
    from speechkit.models.speechllm.generate import eos_ids

    family = FAMILIES[name]
    max_new_tokens = max_new_tokens or family.max_new_tokens
    clips = make_clips(work / "clips")
    official(python, family, repo, "build", *family.build_args, "--out", str(work / "parts"),
             *(["--set", *official_set] if official_set else []))
    parts = json.loads((work / "parts" / "parts.json").read_text())
    print(convert(family, parts, work / "converted", convert_args), file=sys.stderr)
    long = {n: c for n, c in clips.items() if family.cuts_long_audio
            and len(decode_audio(c)) > OFFICIAL_MAX_S * SAMPLE_RATE}
    decoded = {n: first_30_s(c) if n in long else c for n, c in clips.items()}
    model = load_speechllm(str(work / "converted"), device="cpu")
    pad = pad_rows(model, work / "pad_rows.safetensors")
    official(python, family, repo, "run", "--parts", str(work / "parts"), "--out",
             str(work / "official"), "--max-new-tokens", str(max_new_tokens), "--prompt",
             family.prompt, "--clips", *map(str, decoded.values()),
             "--prefix-clips", *map(str, long.values()), *(["--pad-rows", str(pad)] if pad else []))
    eos = set(eos_ids(model.llm, model.tokenizer))
    rows = []
    for clip_name, clip in decoded.items():
        ours = speechkit_side(model, decode_audio(clip), family, max_new_tokens)
        off = read_official(work / "official", clip, eos)
        whole = None
        if clip_name in long:
            whole = prefix_embeds(model, decode_audio(long[clip_name]), family)
            off["embeds"] = read_official(work / "official", long[clip_name], eos)["embeds"]
            clip_name += f" (first {OFFICIAL_MAX_S} s)"
        rows.append(compare(clip_name, off, ours, whole))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("family", choices=sorted(FAMILIES))
    ap.add_argument("--official", type=Path, required=True, help="checkout of the official repo")
    ap.add_argument("--official-python", required=True,
                    help="Python of an environment with the official code's dependencies")
    ap.add_argument("--work", type=Path, help="keep the files here (default: a temp dir)")
    ap.add_argument("--max-new-tokens", type=int, help="default: the official decode config's")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--official-set", nargs="*", default=[], metavar="ARG=VALUE",
                    help="Llama-AVSR: train.py arguments of the built model, e.g. "
                         "compression_mode=avg-pooling layernorm_projector=true")
    ap.add_argument("--convert-args", default="",
                    help='more `speechkit convert` options, e.g. "--compression-mode avg-pooling '
                         '--downsample-ratio-audio 3"')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = parity(a.family, a.official.resolve(), a.official_python,
                      (a.work or Path(tmp)).resolve(), a.max_new_tokens, a.official_set,
                      shlex.split(a.convert_args))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    print(table(a.family, rows))


if __name__ == "__main__":
    main()

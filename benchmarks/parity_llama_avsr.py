"""Llama-AVSR's side of `benchmarks/parity.py` (audio only), run by the official code's Python.

    python benchmarks/parity_llama_avsr.py build --official Llama-AVSR --llama3 DIR --out DIR
    python benchmarks/parity_llama_avsr.py run --official Llama-AVSR --parts DIR --clips a.wav ... --out DIR

`build` writes a tiny random Whisper and a tiny random Llama-3 (with the Llama-3.2 tokenizer)
where the official code reads them, builds `ModelModule_LLM` as `train.py` does for an audio run
with the LLM's LoRA (`--add_PETF_LLM lora --reduction_lora 64 --alpha 8 --unfrozen_modules
peft_llm`, stack compression, ratio 3), makes every trainable tensor random and saves the
released file the official way: a Lightning checkpoint's `state_dict` averaged by
`utils/avg_checkpoints_original.ensemble_original` (`model_avg_1.pth`). `run` loads that file as
`eval.py` does (`--pretrained-model-path`) and decodes each clip through the official test
path (`AudioTransform("test")`, `collate_LLM`, `AVSR_LLMs.forward(is_trainval=False)`), greedy
(`--num-beams 1`) and the official beam (15).

Imports nothing from speechkit. Set around the official code, none of it changed:
- the LLM is `meta-llama/Llama-3.2-1B` by name (the code branches on the hub id): a local
  directory of that name in the working directory stands in, and `llm_size` gives its width;
- fairseq, AV-HuBERT, torchvision and python_speech_features are stand-in modules when missing:
  the audio path never calls them (they are imported for video and AV-HuBERT audio);
- `Tensor.cuda` keeps a CPU tensor and its `.to(torch.bfloat16)` keeps float32: the official
  code runs Whisper on `.cuda().to(torch.bfloat16)` input; here all is float32 on the CPU;
- audio is read with soundfile as `torchaudio.load(normalize=True)` reads it (int16 / 32768).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import types
from pathlib import Path

import torch
from parity_cli import official_parser
from parity_random import eos_prone, randomize

SEED = 0
LLM_ID = "meta-llama/Llama-3.2-1B"  # one of the names the official code decodes with
BEAMS = 15  # eval.py --num-beams
# Llama-3.2-1B's layout (head dim, 4 query heads per key/value head, as the LoRA's V assumes)
TINY_LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=2048,
                  initializer_range=0.2, tie_word_embeddings=False)
TINY_WHISPER = dict(d_model=128, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=256,
                    decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
                    num_mel_bins=80, max_source_positions=1500, max_target_positions=64,
                    vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                    decoder_start_token_id=1)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class _Float32OnCpu(torch.Tensor):
    """What `.cuda()` gives here: the CPU tensor, which stays float32 when cast to bfloat16."""

    def to(self, *args, **kwargs):
        plain = self.as_subclass(torch.Tensor)
        if torch.bfloat16 in args or kwargs.get("dtype") == torch.bfloat16:
            return plain
        return plain.to(*args, **kwargs)


def _stand_in(name: str, **attrs) -> None:
    """A module that only has to import (the audio path never calls it)."""
    try:
        __import__(name)
    except ImportError:
        parent = None
        for depth, part in enumerate(name.split(".")):
            full = ".".join(name.split(".")[: depth + 1])
            module = sys.modules.setdefault(full, types.ModuleType(full))
            if parent is not None:
                setattr(parent, part, module)
            parent = module
        for key, value in attrs.items():
            setattr(sys.modules[name], key, value)


def _official(root: Path) -> None:
    sys.path.insert(0, str(root))
    torch.Tensor.cuda = lambda self, *a, **k: self.as_subclass(_Float32OnCpu)  # type: ignore[method-assign]
    import pytorch_lightning  # noqa: F401 - first: it probes for torchvision when imported

    _stand_in("fairseq")
    _stand_in("av_hubert.avhubert.hubert_asr", AVHubertSeq2Seq=None, AVHubertSeq2SeqConfig=None)
    _stand_in("av_hubert.avhubert.hubert_lora", AVHubertModel_lora=None)
    _stand_in("torchvision")
    _stand_in("python_speech_features", logfbank=None)
    import models.lightning as lightning

    lightning.llm_size[LLM_ID] = TINY_LLAMA["hidden_size"]


def build_parts(llama3: Path, out: Path) -> dict[str, str]:
    """A tiny Whisper (its name holds "whisper", as the code asks) and LLM where the code reads."""
    from transformers import (
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    torch.manual_seed(SEED)
    whisper = WhisperModel(WhisperConfig(**TINY_WHISPER))
    randomize(whisper.parameters())
    whisper.save_pretrained(out / "whisper-tiny-random")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out / "whisper-tiny-random")
    llm_dir = out / LLM_ID
    llm_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(llama3 / name, llm_dir / name)
    tok = AutoTokenizer.from_pretrained(llm_dir)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                       eos_token_id=tok.eos_token_id, **TINY_LLAMA))
    randomize(llm.parameters())
    eos_prone(llm, tok.eos_token_id)
    llm.save_pretrained(llm_dir)
    return {"whisper": str(out / "whisper-tiny-random"), "llm": str(llm_dir), "root": str(out)}


def train_args(parts: dict[str, str], ckpt: str | None = None, beams: int = BEAMS):
    """train.py / eval.py arguments of an audio run with Whisper and the LLM's LoRA."""
    args = dict(
        modality="audio", llm_model=LLM_ID, audio_encoder_name=parts["whisper"],
        pretrain_avhubert_enc_video_path=None, pretrain_avhubert_enc_audio_path=None,
        pretrain_avhubert_enc_audiovisual_path=None, use_lora_avhubert=False,
        single_projector_avhubert=False, intermediate_size=128,
        prompt_audio="Transcribe speech to text.", prompt_video="Transcribe video to text.",
        prompt_audiovisual="Transcribe speech and video to text.", unfrozen_modules=["peft_llm"],
        add_PETF_LLM="lora", reduction_lora=64, alpha=8, downsample_ratio_audio=3,
        downsample_ratio_video=3, downsample_ratio_audiovisual=3, max_dec_tokens=32,
        num_beams=beams, add_sink_loss=False, sink_loss_factor=10000, layernorm_projector=False,
        compression_mode="stack", pretrained_model_path=ckpt)
    return argparse.Namespace(**{**args, **parts.get("train_args", {})})


def build(official: Path, llama3: Path, out: Path, overrides: dict) -> None:
    """The parts, a ModelModule_LLM with random trainables, the averaged release file;
    `overrides` are train.py arguments (e.g. compression_mode, layernorm_projector)."""
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # the LLM is found by its hub name, relative to here
    _official(official)
    from models.lightning import ModelModule_LLM
    from utils.avg_checkpoints_original import ensemble_original

    parts = {**build_parts(llama3, out), "train_args": overrides}
    torch.manual_seed(SEED + 1)
    module = ModelModule_LLM(train_args(parts))
    randomize([p for p in module.parameters() if p.requires_grad])
    (out / "exp" / "tiny").mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict()}, out / "exp" / "tiny" / "epoch=0.ckpt")
    ckpt = ensemble_original(argparse.Namespace(exp_dir=str(out / "exp"), exp_name="tiny",
                                                max_epochs=1), num_average_epochs=1)
    (out / "parts.json").write_text(json.dumps({**parts, "ckpt": ckpt}))


@torch.inference_mode()
def decode(model, batch: dict, beams: int, max_new_tokens: int) -> dict:
    """AVSR_LLMs.forward(is_trainval=False) with the LLM's generate call recorded."""
    seen: dict = {}
    inner = model.llm.generate

    def recording(**kwargs):
        seen.update(kwargs)
        return inner(**kwargs)

    model.llm.generate = recording
    model.num_beams, model.max_dec_tokens = beams, max_new_tokens
    try:
        ids = model(batch, is_trainval=False)[0].tolist()
    finally:
        del model.llm.generate
    logits = model.llm(inputs_embeds=seen["inputs_embeds"]).logits[0, -1]
    return {"ids": ids, "logits": logits.float(), "embeds": seen["inputs_embeds"][0].float()}


def run(official: Path, parts_dir: Path, clips: list[Path], prefix_clips: list[Path],
        max_new_tokens: int, out: Path) -> None:
    """Greedy and beam-15 ids, first-step logits and prefix embeddings of each clip; only the
    prefix embeddings of each of `prefix_clips`."""
    import soundfile
    from safetensors.torch import save_file

    parts = json.loads((parts_dir / "parts.json").read_text())
    os.chdir(parts["root"])
    _official(official)
    from datamodule.data_module import collate_LLM
    from datamodule.transforms import AudioTransform
    from models.lightning import ModelModule_LLM

    module = ModelModule_LLM(train_args(parts, parts["ckpt"])).eval()
    transform = AudioTransform("test")
    out.mkdir(parents=True, exist_ok=True)
    for clip in clips + prefix_clips:
        audio = torch.from_numpy(soundfile.read(str(clip), dtype="float32")[0])[:, None]  # T x 1
        batch = collate_LLM({"audio": transform(audio), "tokens": ""}, module.tokenizer, "audio",
                            is_trainval=False)
        greedy = decode(module.model, batch, 1, max_new_tokens if clip in clips else 1)
        save_file({"logits": greedy["logits"].contiguous(), "embeds": greedy["embeds"].contiguous()},
                  str(out / f"{clip.stem}.safetensors"))
        if clip in clips:
            beam = decode(module.model, batch, BEAMS, max_new_tokens)
            (out / f"{clip.stem}.json").write_text(json.dumps({"greedy": greedy["ids"],
                                                               "beam": beam["ids"]}))


def _overrides(pairs: list[str]) -> dict:
    """ARG=VALUE pairs as train.py would parse them (true/false, integers, text)."""
    out = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        words = {"true": True, "false": False}
        out[key] = words.get(value.lower(), int(value) if value.isdigit() else value)
    return out


def main() -> None:
    ap = official_parser(__doc__.splitlines()[0], "Llama-AVSR checkout", None,
                         max_new_tokens=32)  # eval.py --max-dec-tokens
    ap.add_argument("--llama3", type=Path, help="build: a folder with the Llama-3.2 tokenizer")
    ap.add_argument("--set", nargs="*", default=[], metavar="ARG=VALUE",
                    help="build: train.py arguments, e.g. compression_mode=avg-pooling")
    a = ap.parse_args()
    clips = [c.resolve() for c in a.clips]
    prefix = [c.resolve() for c in a.prefix_clips]
    if a.step == "build":
        build(a.official.resolve(), a.llama3.resolve(), a.out.resolve(), _overrides(a.set))
    else:
        run(a.official.resolve(), a.parts.resolve(), clips, prefix, a.max_new_tokens,
            a.out.resolve())


if __name__ == "__main__":
    main()

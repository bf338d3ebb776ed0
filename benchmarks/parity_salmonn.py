"""SALMONN's side of `benchmarks/parity.py`, run by the official code's own Python.

    python benchmarks/parity_salmonn.py build --official SALMONN --sp tokenizer.model --out DIR
    python benchmarks/parity_salmonn.py run --official SALMONN --parts DIR --clips a.wav ... --out DIR

`build` writes tiny random parts as SALMONN reads them (a Whisper and a LLaMA directory saved by
the official transformers, a BEATs `.pt` of the official BEATs class) and a checkpoint saved by
the official `Runner.save_checkpoint` from a `SALMONN` whose every trainable tensor is random
(LoRA B included). `run` loads that checkpoint with `SALMONN.from_config` and decodes each clip
with the official `prepare_one_sample` and `SALMONN.generate`, greedy and beam 4.

Imports nothing from speechkit and nothing from this repository: the official code comes from
--official. Three things are set around it, none inside it:
- the Q-Former config: `BertConfig.from_pretrained("bert-base-uncased")` is answered with
  bert-base's config at a tiny width (24 wide, bert-base's 12 heads, 2 layers as SALMONN sets);
- `Tensor.cuda` returns the tensor (`generate` builds its stop id with `.cuda()`; CPU only here);
- the model is cast to float32 after `from_config` (it loads the LLM in float16 for a GPU); the
  LLM weights are written already rounded to float16, so the cast loses nothing;
- `run --pad-rows` then sets the `[PAD]` input and output rows (random at every load) to the
  given ones: speechkit's, so that both sides decode the same model.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch
from parity_cli import official_parser
from parity_random import eos_prone, randomize

SEED = 0
PROMPT_TEMPLATE = "USER: {}\nASSISTANT:"  # configs/decode_config.yaml
SPEECH_PROMPT = "<Speech><SpeechHere></Speech> {}"  # cli_inference.py
BEAMS = 4  # decode_config.yaml num_beams
LORA = dict(lora=True, lora_rank=8, lora_alpha=32, lora_dropout=0.1)  # decode_config.yaml
TINY_WHISPER = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                    decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
                    num_mel_bins=80, max_source_positions=1500, max_target_positions=64,
                    vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                    decoder_start_token_id=1)
# Vicuna's layout at a tiny width; init 0.2 gives peaked logits (no near-ties in greedy)
TINY_LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=2048, initializer_range=0.2)
# BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt's cfg at a tiny width
TINY_BEATS = dict(input_patch_size=16, embed_dim=20, conv_bias=False, encoder_layers=2,
                  encoder_embed_dim=24, encoder_ffn_embed_dim=48, encoder_attention_heads=4,
                  activation_fn="gelu", layer_norm_first=False, deep_norm=True, conv_pos=16,
                  conv_pos_groups=4, relative_position_embedding=True, num_buckets=32,
                  max_distance=128, gru_rel_pos=True, finetuned_model=True, predictor_class=5)
TINY_QFORMER = dict(hidden_size=24, num_attention_heads=12, intermediate_size=48)


def _official(root: Path) -> None:
    """Put the official checkout first on the path and answer its two hub/GPU calls."""
    sys.path.insert(0, str(root))
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    import models.salmonn as official
    from transformers import BertConfig

    class TinyBert(BertConfig):
        @classmethod
        def from_pretrained(cls, name, **kwargs):  # noqa: ARG003 - the name is bert-base's
            return BertConfig(**TINY_QFORMER)

    official.BertConfig = TinyBert


def build_parts(sp_model: Path, out: Path) -> dict[str, str]:
    """Tiny Whisper, LLaMA (+ the SentencePiece tokenizer) and BEATs as SALMONN loads them."""
    from models.beats.BEATs import BEATs, BEATsConfig
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaTokenizer,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    torch.manual_seed(SEED)
    whisper = WhisperModel(WhisperConfig(**TINY_WHISPER))
    randomize(list(whisper.parameters()))
    whisper.save_pretrained(out / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out / "whisper")
    tok = LlamaTokenizer(vocab_file=str(sp_model))
    tok.save_pretrained(out / "llm")
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=tok.vocab_size, bos_token_id=1, eos_token_id=2,
                                       pad_token_id=0, **TINY_LLAMA))
    randomize(list(llm.parameters()))
    eos_prone(llm, tok.eos_token_id)
    with torch.no_grad():  # SALMONN loads the LLM in float16: values it can hold exactly
        for p in llm.parameters():
            p.copy_(p.half().float())
    llm.save_pretrained(out / "llm")
    beats = BEATs(BEATsConfig(TINY_BEATS))
    randomize(list(beats.parameters()))
    torch.save({"cfg": TINY_BEATS, "model": beats.state_dict()}, out / "beats.pt")
    return {"whisper": str(out / "whisper"), "llm": str(out / "llm"), "beats": str(out / "beats.pt")}


def model_config(parts: dict[str, str], ckpt: str = "") -> dict:
    """decode_config.yaml's `model` section with the parts' paths."""
    return dict(llama_path=parts["llm"], whisper_path=parts["whisper"], beats_path=parts["beats"],
                ckpt=ckpt, use_speech_Qformer=True, freeze_speech_QFormer=False,
                window_level_Qformer=True, num_speech_query_token=1, second_per_window=0.333333,
                second_stride=0.333333, multi_prompt=True, prompt_template=PROMPT_TEMPLATE,
                prompt_path="", max_txt_len=300, end_sym="</s>", **LORA)


def build(official: Path, sp_model: Path, out: Path) -> None:
    """The parts, then a SALMONN with random trainables saved by the official runner."""
    _official(official)
    from models.salmonn import SALMONN
    from runner import Runner

    out.mkdir(parents=True, exist_ok=True)
    parts = build_parts(sp_model, out)
    torch.manual_seed(SEED + 1)
    model = SALMONN.from_config(model_config(parts)).float()
    trainable = [p for p in model.parameters() if p.requires_grad]
    randomize(trainable)
    saver = types.SimpleNamespace(model=model, optimizer=torch.optim.AdamW(trainable), scaler=None,
                                  config=types.SimpleNamespace(to_dict=lambda: model_config(parts)),
                                  output_dir=str(out), unwrap_dist_model=lambda m: m)
    Runner.save_checkpoint(saver, 0)  # writes checkpoint_0.pth as training does
    (out / "parts.json").write_text(json.dumps({**parts, "ckpt": str(out / "checkpoint_0.pth")}))


@torch.inference_mode()
def decode(model, samples: dict, prompt: str, beams: int, max_new_tokens: int) -> dict:
    """SALMONN.generate as cli_inference.py calls it; the LLM's generate call is recorded (its
    inputs give the first-step logits and the prefix embeddings)."""
    seen: dict = {}
    inner = model.llama_model.generate

    def recording(**kwargs):
        seen.update(kwargs)
        seen["ids"] = inner(**kwargs)
        return seen["ids"]

    model.llama_model.generate = recording
    try:
        cfg = {"max_new_tokens": max_new_tokens, "num_beams": beams, "do_sample": False,
               "min_length": 1, "temperature": 1.0, "top_p": 0.9, "repetition_penalty": 1.0,
               "length_penalty": 1.0}
        model.generate(samples, cfg, prompts=[PROMPT_TEMPLATE.format(SPEECH_PROMPT.format(prompt))])
    finally:
        del model.llama_model.generate
    logits = model.llama_model(inputs_embeds=seen["inputs_embeds"],
                               attention_mask=seen["attention_mask"]).logits[0, -1]
    ids = seen["ids"][0].tolist()
    # transformers 4.28 returns the ids behind the placeholder it starts from (one BOS)
    assert ids[0] == model.llama_tokenizer.bos_token_id, ids[:3]
    return {"ids": ids[1:], "logits": logits.float(),
            "embeds": seen["inputs_embeds"][0].float()}


@torch.no_grad()
def use_pad_rows(llm, file: Path) -> None:
    """The `[PAD]` input and output rows from `file` in place of the random ones
    `resize_token_embeddings` gave at this load (the same rows as speechkit's)."""
    from safetensors.torch import load_file

    rows = load_file(str(file))
    pad = int(rows["id"][0])
    llm.get_input_embeddings().weight[pad] = rows["input"]
    llm.get_output_embeddings().weight[pad] = rows["output"]


def run(official: Path, parts_dir: Path, clips: list[Path], prefix_clips: list[Path], prompt: str,
        max_new_tokens: int, out: Path, pad_rows: Path | None = None) -> None:
    """Greedy and beam-4 ids, first-step logits and prefix embeddings of each clip; only the
    prefix embeddings of each of `prefix_clips`."""
    _official(official)
    from models.salmonn import SALMONN
    from safetensors.torch import save_file
    from transformers import WhisperFeatureExtractor
    from utils import prepare_one_sample

    parts = json.loads((parts_dir / "parts.json").read_text())
    model = SALMONN.from_config(model_config(parts, parts["ckpt"])).float().eval()
    if pad_rows:
        use_pad_rows(model.llama_model, pad_rows)
    processor = WhisperFeatureExtractor.from_pretrained(parts["whisper"])
    out.mkdir(parents=True, exist_ok=True)
    for clip in clips + prefix_clips:
        samples = prepare_one_sample(str(clip), processor, cuda_enabled=False)
        greedy = decode(model, samples, prompt, 1, max_new_tokens if clip in clips else 1)
        save_file({"logits": greedy["logits"].contiguous(), "embeds": greedy["embeds"].contiguous()},
                  str(out / f"{clip.stem}.safetensors"))
        if clip in clips:
            beam = decode(model, samples, prompt, BEAMS, max_new_tokens)
            (out / f"{clip.stem}.json").write_text(json.dumps({"greedy": greedy["ids"],
                                                               "beam": beam["ids"]}))


def main() -> None:
    ap = official_parser(__doc__.splitlines()[0], "SALMONN checkout",
                         "Recognize the speech and give me the transcription.",
                         max_new_tokens=200)  # decode_config.yaml
    ap.add_argument("--sp", type=Path, help="build: a LLaMA-kind SentencePiece tokenizer.model")
    ap.add_argument("--pad-rows", type=Path, help="run: the [PAD] rows to decode with")
    a = ap.parse_args()
    if a.step == "build":
        build(a.official.resolve(), a.sp, a.out)
    else:
        run(a.official.resolve(), a.parts, a.clips, a.prefix_clips, a.prompt, a.max_new_tokens,
            a.out, a.pad_rows)


if __name__ == "__main__":
    main()

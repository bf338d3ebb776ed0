"""A SALMONN-shaped checkpoint with random weights, for memory and speed runs on a GPU.

Whisper large-v2's encoder, BEATs iter3 and Vicuna-13B (or 7B) in their published shapes,
SALMONN's window Q-Former and LoRA (r 8, alpha 32 on q, v), all random (seeded): the pipeline,
shapes, memory and speed are real, the text is not. Then time it with the speech-LLM
benchmark, 4-bit against bf16:

    python benchmarks/salmonn_shape.py --out /tmp/salmonn13b
    python benchmarks/speechllm.py --checkpoint /tmp/salmonn13b --device cuda --quant 4bit
    python benchmarks/speechllm.py --checkpoint /tmp/salmonn13b --device cuda --quant bf16

`--llm tiny --encoders tiny` writes small shapes that run on a CPU (to check the script).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TOKENIZER = "smollm2-135m"  # random LLMs need a tokenizer; its 49,152 ids set the vocabulary
# lmsys/vicuna-13b-v1.1 and -7b-v1.1 config.json (vocabulary: the tokenizer's, see above)
VICUNA = {
    "13b": dict(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40,
                intermediate_size=13824),
    "7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
               intermediate_size=11008),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
}
# openai/whisper-large-v2 config.json (encoder; the decoder is not built)
WHISPER = {
    "full": dict(model_type="whisper", d_model=1280, encoder_layers=32, encoder_attention_heads=20,
                 encoder_ffn_dim=5120, num_mel_bins=80, max_source_positions=1500,
                 decoder_layers=1, decoder_attention_heads=20, decoder_ffn_dim=64),
    "tiny": dict(model_type="whisper", d_model=32, encoder_layers=2, encoder_attention_heads=2,
                 encoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500,
                 decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64),
}
# BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt cfg (the checkpoint SALMONN uses)
BEATS = {
    "full": dict(input_patch_size=16, embed_dim=512, encoder_layers=12, encoder_embed_dim=768,
                 encoder_ffn_embed_dim=3072, encoder_attention_heads=12, deep_norm=True,
                 conv_pos=128, conv_pos_groups=16, relative_position_embedding=True,
                 num_buckets=320, max_distance=800, gru_rel_pos=True),
    "tiny": dict(input_patch_size=16, embed_dim=20, encoder_layers=2, encoder_embed_dim=24,
                 encoder_ffn_embed_dim=48, encoder_attention_heads=4, deep_norm=True, conv_pos=16,
                 conv_pos_groups=4, relative_position_embedding=True, num_buckets=32,
                 max_distance=128, gru_rel_pos=True),
}

# SALMONN's window Q-Former (BERT-base sizes, checkpoint.QFormerSpec's defaults); tiny for CPU checks
QFORMER = {"full": dict(), "tiny": dict(hidden_size=32, heads=2, intermediate_size=64)}


def salmonn_shaped(out: Path, llm: str, encoders: str, tokenizer: str = TOKENIZER) -> None:
    """Write the checkpoint: spec, random Q-Former weights and a fresh LoRA adapter."""
    from speechkit.models.speechllm.checkpoint import (
        BridgeInput,
        BridgeSpec,
        CheckpointSpec,
        DecodeDefaults,
        EncoderSpec,
        LLMSpec,
        LoraSpec,
        PromptSpec,
        QFormerSpec,
        write_spec,
    )
    from speechkit.models.speechllm.create import _write_parts
    from speechkit.models.speechllm.llm import llm_config, load_tokenizer

    whisper, beats = WHISPER[encoders], BEATS[encoders]
    qformer = QFormerSpec(**QFORMER[encoders])
    lspec = LLMSpec(source="random", tokenizer=tokenizer,
                    lora=LoraSpec(r=8, alpha=32.0, target_modules=["q_proj", "v_proj"]))
    lspec.vocab_size = len(load_tokenizer(lspec, []))
    lspec.config = dict(model_type="llama", vocab_size=lspec.vocab_size, rms_norm_eps=1e-6,
                        max_position_embeddings=2048, tie_word_embeddings=False, **VICUNA[llm])
    lspec.hidden_size = VICUNA[llm]["hidden_size"]
    spec = CheckpointSpec(
        encoders=[EncoderSpec(modality="audio", type="whisper", source="random", config=whisper,
                              dim=whisper["d_model"], pad_window=True),
                  EncoderSpec(modality="beats", type="beats", source="random", config=beats,
                              dim=beats["encoder_embed_dim"], pad_window=True)],
        bridge=BridgeSpec(type="qformer", out_dim=lspec.hidden_size, qformer=qformer,
                          inputs={"audio": BridgeInput(in_dim=whisper["d_model"]),
                                  "beats": BridgeInput(in_dim=beats["encoder_embed_dim"])}),
        llm=lspec, prompt=PromptSpec(template="salmonn"),
        decode=DecodeDefaults(beam_size=4, max_new_tokens=200))
    out.mkdir(parents=True, exist_ok=True)
    _write_parts(out, spec, llm_config(lspec))
    write_spec(out, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="Checkpoint directory to write.")
    p.add_argument("--llm", choices=sorted(VICUNA), default="13b")
    p.add_argument("--encoders", choices=["full", "tiny"], default="full")
    args = p.parse_args()
    salmonn_shaped(args.out, args.llm, args.encoders)
    print(f"wrote {args.out}: SALMONN-{args.llm}-shaped, random weights")


if __name__ == "__main__":
    main()

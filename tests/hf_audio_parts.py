"""Tiny random transformers audio-text-to-text models (no hub): each family's own config and
processor classes, a byte-level BPE tokenizer trained here with the family's special tokens."""

from __future__ import annotations

from pathlib import Path

import torch

SEED = 0
CORPUS = ["yes no Yes No the speech is a test of the speech model",
          "system user assistant you are a helpful assistant audio",
          "recognize the speech and give me the transcription"] * 4
QWEN2_AUDIO_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>",
                       "<|audio_bos|>", "<|audio_eos|>"]
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, initializer_range=0.3)
TINY_AUDIO = dict(num_mel_bins=80, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                  d_model=32, initializer_range=0.3)


def bpe_tokenizer(special: list[str], eos: str, pad: str):
    """A byte-level BPE (about 300 ids) trained on a few sentences, `special` ids first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad)


def tiny_qwen2_audio(directory: Path) -> Path:
    """A random Qwen2-Audio (1-layer Whisper-style encoder, 2-layer Qwen2) with its processor
    and the Qwen2-Audio chat template, saved as safetensors."""
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    tok = bpe_tokenizer(QWEN2_AUDIO_SPECIAL, eos="<|im_end|>", pad="<|endoftext|>")
    Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tok).save_pretrained(
        directory)
    config = Qwen2AudioConfig(
        audio_config=TINY_AUDIO, audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **TINY_TEXT))
    torch.manual_seed(SEED)
    Qwen2AudioForConditionalGeneration(config).save_pretrained(directory)
    return directory

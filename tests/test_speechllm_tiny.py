"""Tiny random components for speech-LLM tests: Whisper/WavLM encoders, Llama + tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CORPUS = ["yes no Yes No the speech is a test of the speech model",
          "recognize the speech and give me the transcription",
          "user assistant answer yes or no describe the audio please"] * 4
SEED = 0
TINY_WHISPER = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                    decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
                    num_mel_bins=80, max_source_positions=1500, max_target_positions=32,
                    vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                    decoder_start_token_id=1)
TINY_WAVLM = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, conv_dim=(16, 16, 16, 16, 16, 16, 16),
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                  feat_extract_norm="layer", num_buckets=32, max_bucket_distance=100)


def tiny_whisper(directory: Path) -> Path:
    """A random 2-layer Whisper saved as a transformers dir."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(SEED)
    WhisperForConditionalGeneration(WhisperConfig(**TINY_WHISPER)).save_pretrained(directory)
    return directory


def tiny_wavlm(directory: Path) -> Path:
    """A random 2-layer WavLM saved as a transformers dir."""
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(SEED)
    WavLMModel(WavLMConfig(**TINY_WAVLM)).save_pretrained(directory)
    return directory


def tiny_llm(directory: Path, init: float = 0.2) -> Path:
    """A random 2-layer Llama with a byte-level BPE tokenizer trained here, saved together."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")
    fast.save_pretrained(directory)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, initializer_range=init,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(SEED)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def noise(seconds: float, seed: int) -> np.ndarray:
    """Deterministic speech-like noise (a few tones plus noise) at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 2000, 3))
    return (0.1 * tones + 0.05 * rng.standard_normal(len(t))).astype(np.float32)

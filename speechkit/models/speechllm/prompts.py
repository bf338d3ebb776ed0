"""Prompt templates per model family and per-task prompts; the speech goes where SPEECH is."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from speechkit.errors import SpeechkitError
from speechkit.languages import language_name
from speechkit.models.speechllm.checkpoint import PromptSpec
from speechkit.tasks import TASKS, find_task

SPEECH = "<|speechkit-speech|>"  # sentinel: the text is split here and the embeddings spliced in
# The family defaults are the task registry's prompts (SALMONN's, speechkit.tasks).
DEFAULT_TASK_PROMPTS = {t.name: t.prompt for t in TASKS.values() if t.prompt}
# Llama-AVSR prompts (umbertocappellazzo/Llama-AVSR), one per input modality.
LLAMA_AVSR_TASK_PROMPTS = {"asr": "Transcribe speech to text.", "vsr": "Transcribe video to text.",
                           "avsr": "Transcribe speech and video to text."}
# WavLLM's system prompt (microsoft/SpeechT5 WavLLM speechllm_dataset.py); override in the spec.
WAVLLM_SYSTEM = ("As a helpful language and speech assistant, you are able to understand the "
                 "speech content provided by the user, and assist the user with a variety of "
                 "tasks using natural language.")


def template_prompts(spec: PromptSpec) -> dict[str, str]:
    """Task -> prompt for a checkpoint: the spec's own, else its template family's defaults."""
    defaults = dict(DEFAULT_TASK_PROMPTS)
    if spec.template == "llama-avsr":
        defaults.update(LLAMA_AVSR_TASK_PROMPTS)
    return {**defaults, **{t: text for t, text in spec.tasks.items() if text}}


def task_prompt(spec: PromptSpec, task: str, target_language: str | None = None,
                item_prompt: str | None = None, override: str | None = None) -> str:
    """The instruction for one item: override > spec task prompt > family default."""
    known = find_task(task)  # a name the registry does not know is a custom task (own prompt)
    task = known.name if known else task
    text = override or template_prompts(spec).get(task)
    if text is None:
        if item_prompt:
            return item_prompt
        raise SpeechkitError(f"no prompt for task {task!r}: use one of {', '.join(DEFAULT_TASK_PROMPTS)} or "
                             "give --prompt")
    if "{question}" in text:
        if not item_prompt:
            raise SpeechkitError(f"task {task!r} needs a question per item (the manifest's "
                                 "`prompt` field)")
        text = text.replace("{question}", item_prompt)
    elif item_prompt and not override:
        text = item_prompt  # a per-item prompt replaces the task prompt
    if "{target_language}" in text:
        if not target_language:
            raise SpeechkitError(f"task {task!r} needs --target-language (e.g. de)")
        text = text.replace("{target_language}", language_name(target_language))
    return text


# Each template is text around the speech. The official code of each family tokenizes every
# text piece on its own (SentencePiece then gives the piece its own "▁" prefix) and adds BOS as an
# id; a string with "<s>" inside tokenizes differently under transformers 5 ("USER" instead of
# "▁US ER"), so the ids are built piece by piece here and `render` is only the readable form.
SALMONN_BEFORE, SALMONN_AFTER = "USER: <Speech>", "</Speech> {prompt}\nASSISTANT:"  # "USER: {}\nASSISTANT:"
WAVLLM_BEFORE = "[INST]<<SYS>>\n{system}\n<</SYS>>\n\n<SPEECH>"  # "[INST]<<SYS>>" joined, as WavLLM
WAVLLM_AFTER = " </SPEECH> {prompt} [/INST]"


def render(spec: PromptSpec, prompt: str, tokenizer: Any) -> str:
    """The full text of one item with SPEECH where the modality embeddings go (for reading and
    for the yes/no check; the model's input ids come from `prompt_ids`)."""
    bos = tokenizer.bos_token or ""
    if spec.template == "salmonn":
        return f"{bos}{SALMONN_BEFORE}{SPEECH}{SALMONN_AFTER.format(prompt=prompt)}"
    if spec.template == "llama-avsr":  # BOS <audio>A</audio><video>V</video> prompt, via `wrap`
        return f"{bos}{SPEECH}{prompt}" if spec.wrap else f"{bos}<audio>{SPEECH}</audio>{prompt}"
    if spec.template == "wavllm":
        return (f"{bos}{WAVLLM_BEFORE.format(system=_wavllm_system(spec))}{SPEECH}"
                f"{WAVLLM_AFTER.format(prompt=prompt)}")
    if spec.template == "chat":
        return _chat_text(spec, prompt, tokenizer)
    raise SpeechkitError(f"unknown prompt template {spec.template!r}")


def prompt_ids(spec: PromptSpec, prompt: str, tokenizer: Any) -> tuple[list[int], list[int]]:
    """Token ids before and after the speech, as each family's own code builds them."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    if spec.template == "salmonn":  # SALMONN: BOS id, then each side of <SpeechHere> alone
        return bos + encode(tokenizer, SALMONN_BEFORE), encode(tokenizer, SALMONN_AFTER.format(prompt=prompt))
    if spec.template == "llama-avsr":  # Llama-AVSR: BOS id, the wrapped features, the prompt alone
        if spec.wrap:
            return bos, encode(tokenizer, prompt)
        return (bos + _token(tokenizer, "<audio>"),
                _token(tokenizer, "</audio>") + encode(tokenizer, prompt))
    if spec.template == "wavllm":
        return (bos + encode(tokenizer, WAVLLM_BEFORE.format(system=_wavllm_system(spec))),
                bos + _wavllm_after(tokenizer, WAVLLM_AFTER.format(prompt=prompt)))
    if spec.template == "chat":  # as apply_chat_template(tokenize=True): specials as text
        before, after = _split(_chat_text(spec, prompt, tokenizer))
        return encode(tokenizer, before), encode(tokenizer, after)
    raise SpeechkitError(f"unknown prompt template {spec.template!r}")


def encode(tokenizer: Any, text: str) -> list[int]:
    """Ids of one text piece on its own, no special tokens added. Where the tokenizer's folder
    holds a SentencePiece `tokenizer.model` (LLaMA, Vicuna, Llama-2), SentencePiece encodes it,
    as the official code does: transformers 5's LlamaTokenizer differs on spaces (" </SPEECH>")."""
    if not text:
        return []
    sp = sentencepiece_model(str(getattr(tokenizer, "name_or_path", "") or ""))
    if sp is not None and sp.get_piece_size() == getattr(tokenizer, "vocab_size", None):
        return list(sp.encode(text))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@functools.lru_cache(maxsize=4)
def sentencepiece_model(folder: str) -> Any:
    """The folder's SentencePiece model, or None (no such file, or Llama-3's tiktoken file)."""
    path = Path(folder) / "tokenizer.model" if folder else None
    if path is None or not path.is_file():
        return None
    import sentencepiece

    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError):
        return None


def _token(tokenizer: Any, text: str) -> list[int]:
    """An added token's id, or the text's ids where the vocabulary has no such token."""
    i = tokenizer.convert_tokens_to_ids(text)
    return [i] if i is not None and i != tokenizer.unk_token_id else encode(tokenizer, text)


def _wavllm_after(tokenizer: Any, text: str) -> list[int]:
    """WavLLM's decoder starts after the speech with BOS in place of the first id of the text
    after it and forces the rest as a prefix. With LLaMA's SentencePiece that first id is the
    lone "▁" of " </SPEECH>"; where a tokenizer joins the space to the next piece ("Ġ</"),
    BOS takes the space alone."""
    ids = encode(tokenizer, text)
    if ids and not tokenizer.decode(ids[:1]).strip():
        return ids[1:]
    return encode(tokenizer, text.removeprefix(" "))


def _wavllm_system(spec: PromptSpec) -> str:
    return spec.system if spec.system is not None else WAVLLM_SYSTEM


def _chat_text(spec: PromptSpec, prompt: str, tokenizer: Any) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise SpeechkitError("prompt template 'chat' needs an LLM tokenizer with a chat "
                             "template; use salmonn, llama-avsr or wavllm")
    messages = [{"role": "system", "content": spec.system}] if spec.system else []
    messages.append({"role": "user", "content": f"<speech>{SPEECH}</speech> {prompt}"})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _split(text: str) -> tuple[str, str]:
    if text.count(SPEECH) != 1:
        raise SpeechkitError("a prompt must hold the speech placeholder exactly once")
    before, after = text.split(SPEECH)
    return before, after


def split_ids(text: str, tokenizer: Any) -> tuple[list[int], list[int]]:
    """Token ids before and after the SPEECH sentinel of a rendered text (specials as text)."""
    before, after = _split(text)
    return encode(tokenizer, before), encode(tokenizer, after)

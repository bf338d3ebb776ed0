"""Prompt templates per model family and per-task prompts; the speech goes where SPEECH is."""

from __future__ import annotations

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


def render(spec: PromptSpec, prompt: str, tokenizer: Any) -> str:
    """The full text of one item with SPEECH where the modality embeddings go."""
    bos = tokenizer.bos_token or ""
    if spec.template == "salmonn":
        return f"{bos}USER: <Speech>{SPEECH}</Speech> {prompt}\nASSISTANT:"
    if spec.template == "llama-avsr":  # BOS <audio>A</audio><video>V</video> prompt, via `wrap`
        return f"{bos}{SPEECH}{prompt}" if spec.wrap else f"{bos}<audio>{SPEECH}</audio>{prompt}"
    if spec.template == "wavllm":
        system = spec.system if spec.system is not None else WAVLLM_SYSTEM
        # WavLLM's layout: "[INST]<<SYS>>" joined, a space before </SPEECH> and [/INST].
        return (f"{bos}[INST]<<SYS>>\n{system}\n<</SYS>>\n\n"
                f"<SPEECH>{SPEECH} </SPEECH> {prompt} [/INST]")
    if spec.template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise SpeechkitError("prompt template 'chat' needs an LLM tokenizer with a chat "
                                 "template; use salmonn, llama-avsr or wavllm")
        messages = [{"role": "system", "content": spec.system}] if spec.system else []
        messages.append({"role": "user", "content": f"<speech>{SPEECH}</speech> {prompt}"})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    raise SpeechkitError(f"unknown prompt template {spec.template!r}")


def split_ids(text: str, tokenizer: Any) -> tuple[list[int], list[int]]:
    """Token ids before and after the SPEECH sentinel (specials already in the text)."""
    if text.count(SPEECH) != 1:
        raise SpeechkitError("a prompt must hold the speech placeholder exactly once")
    before, after = text.split(SPEECH)
    enc = tokenizer(  # one call for both halves: fast tokenizers batch them
        [before, after], add_special_tokens=False)["input_ids"]
    return list(enc[0]), list(enc[1])

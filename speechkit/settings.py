"""Runtime options checked once, before anything loads, and the options a model would ignore.

`--device`, `--dtype` and `--quant` are checked here against the lists the loaders use; a bad
value or combination is a usage error naming the fix. An option the chosen model does not use
(`SpeechModel.uses`) is reported as one warning line rather than dropped in silence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechkit.errors import SpeechkitError
from speechkit.models.base import DecodeOptions, SpeechModel
from speechkit.models.registry import (
    RuntimeOptions,
    check_dtype,
    names_whisper,
    resolve_device,
    resolve_dtype,
)


def check_quant(value: str | None) -> str | None:
    if value is None:  # the default: nothing to check, and no speech-LLM (torch) import
        return None
    from speechkit.models.speechllm.llm import QUANTS

    if value not in QUANTS:
        raise SpeechkitError(f"unknown --quant {value!r}; use one of {', '.join(QUANTS)}")
    return value


def check_runtime(runtime: RuntimeOptions) -> RuntimeOptions:
    """Every runtime option and their combination (e.g. int8 on a GPU), before any load."""
    check_dtype(runtime.dtype)
    check_quant(runtime.quant)
    resolve_dtype(runtime.dtype, resolve_device(runtime.device))
    return runtime


# Why an option given to a model that does not use it changes nothing.
_IGNORED_BECAUSE = {
    "device": "it runs on the CPU only",
    "dtype": "it runs in one fixed precision",
    "quant": "--quant loads speech-LLM weights in 4/8 bit (Whisper on a CPU: --dtype int8)",
    "beam_size": "it does not generate text",
    "max_new_tokens": "it does not generate text",
    "prompt": "it takes no text prompt",
    "target_language": "it translates into English only, or not at all",
    "word_timestamps": "only Whisper times words",
    "no_speech_threshold": "only Whisper has a no-speech probability",
    "condition_on_previous_text": "only Whisper prompts a piece with the text before it",
    "language": "it does not read a spoken language",
    "engine": "only Whisper models have a choice of engine",
    "threads": "it sets no math threads",
    "lora_gate": "it has no prompt-aware LoRA",
    "lora_scale": "it has no LoRA adapter",
}


def given_options(runtime: RuntimeOptions, options: DecodeOptions,
                  batch_size: int | None) -> dict[str, Any]:
    """The options the user set (not left at their default)."""
    given = {"device": runtime.device if runtime.device != "auto" else None,
             "dtype": runtime.dtype if runtime.dtype != "auto" else None,
             "quant": runtime.quant, "batch_size": batch_size,
             "engine": runtime.engine if runtime.engine != "auto" else None,
             "threads": runtime.threads, "lora_gate": runtime.lora_gate,
             "lora_scale": runtime.lora_scale,
             "word_timestamps": options.word_timestamps or None,
             "no_speech_threshold": options.no_speech_threshold,
             "condition_on_previous_text": options.condition_on_previous_text}
    for key in ("beam_size", "max_new_tokens", "prompt", "target_language", "language"):
        given[key] = getattr(options, key)
    return {k: v for k, v in given.items() if v is not None}


def ignored_options(model_name: str, uses: frozenset[str], runtime: RuntimeOptions,
                    options: DecodeOptions, batch_size: int | None) -> list[str]:
    """One warning line per option given that this model does not use."""
    return [f"--{key.replace('_', '-')} is ignored by {model_name}: "
            f"{_IGNORED_BECAUSE.get(key, 'it does not use it')}"
            for key in given_options(runtime, options, batch_size) if uses and key not in uses]


def model_class(model: Any) -> type[SpeechModel] | None:
    """The class a `--model` argument (a name, a card or a loaded model) is, known without
    loading anything; None when it is not a model (the loader then says why)."""
    from speechkit.models.catalogue import CATALOGUE
    from speechkit.models.identity import ModelCard

    if isinstance(model, SpeechModel):
        return type(model)
    if isinstance(model, ModelCard) and model.model is not None:
        return type(model.model)
    name = model.name if isinstance(model, ModelCard) else str(model)
    if name in CATALOGUE and CATALOGUE[name].model_class:
        return CATALOGUE[name].model_type()
    if names_whisper(name):
        from speechkit.models.whisper import WhisperModel

        return WhisperModel
    from speechkit.models.speechllm.checkpoint import is_speechllm_checkpoint

    if Path(name).expanduser().is_dir() and is_speechllm_checkpoint(Path(name).expanduser()):
        from speechkit.models.speechllm.model import SpeechLLM

        return SpeechLLM
    from speechkit.models.hf_audio import family_of

    if family_of(name) is not None:
        from speechkit.models.hf_audio.model import AudioTextModel

        return AudioTextModel
    return None


def model_task(model: Any, name: str, task: str, target_language: str | None, where: str) -> str:
    """The task `model` is asked to do for a suite's task; one it cannot do is a usage error
    before anything loads."""
    cls = model_class(model)
    if cls is None:
        return task
    found = cls.task_for(task, target_language)
    if found is None:
        what = f"{task} into {target_language}" if task == "st" else task
        raise SpeechkitError(f"{name} is a {cls.kind} model: it cannot do {what} ({where}); use a "
                             "speech-LLM checkpoint (--model DIR)")
    return found


def check_task(model: Any, task: str) -> None:
    """`--task` against what the model (a name, a card or a loaded model) accepts: checked
    before it loads, and by the runner before it decodes. A usage error, not a per-item one:
    the task is one for the whole run, so every item would fail the same way."""
    cls = model_class(model)
    if cls is not None and cls.tasks and task not in cls.tasks:
        raise SpeechkitError(f"{getattr(model, 'name', model)} is a {cls.kind} model: it does --task "
                             f"{' or '.join(sorted(cls.tasks))}, not {task!r}; use a speech-LLM "
                             "checkpoint (--model DIR) for other tasks")


def unused_option_warnings(model: Any, runtime: RuntimeOptions, options: DecodeOptions,
                           batch_size: int | None) -> list[str]:
    """One line per option the user gave that this model does not use (for the CLI to print)."""
    cls = model_class(model)
    if cls is None:
        return []
    name = model.name if hasattr(model, "name") else str(model)
    return ignored_options(name, cls.uses, runtime, options, batch_size)

"""transformers' audio-text-to-text models as a SpeechModel: the family's own processor and chat
template, left-padded batches, deterministic decoding, long audio in the family's windows."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from speechkit.models.base import (
    AUDIO,
    ENROLL,
    SAMPLE_RATE,
    DecodeOptions,
    Hypothesis,
    Inputs,
    SpeechModel,
)
from speechkit.models.hf_audio.family import AUDIO_TASKS, Family
from speechkit.models.speechllm import generate as gen
from speechkit.models.speechllm.checkpoint import PromptSpec
from speechkit.models.speechllm.model import pair_audio
from speechkit.models.speechllm.prompts import task_prompt
from speechkit.tasks import find_task

JOINED_TASKS = ("asr", "st")  # long audio: every window decoded, the texts joined in order
# Generation config keys that are not decoding settings, or are recorded in `decode`.
NOT_RECORDED = ("max_new_tokens", "num_beams", "return_dict_in_generate", "output_logits",
                "output_attentions", "output_hidden_states", "transformers_version",
                "_from_model_config")


@dataclass
class Request:
    """One chat turn sent to the model: an item's clips (one window, or a trial's two) and the
    instruction."""

    item: int  # index of the item in the batch
    clips: list[np.ndarray]
    prompt: str


class AudioTextModel(SpeechModel):
    """A transformers audio-text-to-text model (Qwen2-Audio, ...) loaded from a local directory."""

    kind = "audio-LLM"
    modalities = frozenset({AUDIO, ENROLL})
    tasks = frozenset(AUDIO_TASKS)
    # --language is not read: the prompts do not name the spoken language (a warning says so).
    uses = SpeechModel.uses | {"quant", "dtype", "target_language", "prompt"}

    def __init__(self, model: Any, processor: Any, family: Family, *, name: str, device: str,
                 quant: str, sha256: str) -> None:
        self.model, self.processor, self.family = model, processor, family
        self.name, self._device, self.quant, self.sha256 = name, device, quant, sha256
        # transcribe and bench cut longer files at silences into spans of at most this (as for
        # Whisper); `generate` itself windows anything longer (see `windows_of`).
        self.max_input_s = family.window_s
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation continues every row at the same index
        self.dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        self.yes_ids = gen.variant_ids(self.tokenizer, gen.YES_VARIANTS)
        self.no_ids = gen.variant_ids(self.tokenizer, gen.NO_VARIANTS)
        self.last_tokens: list[list[int]] = []  # ids of every request of the latest batch
        self.last_inputs: Any = None  # the processor's output of the latest batch

    @property
    def device(self) -> str:
        return self._device

    @classmethod
    def task_for(cls, task: str, target_language: str | None = None) -> str | None:
        known = find_task(task)
        return known.name if known and known.name in AUDIO_TASKS else None

    def prompt_for(self, task: str, options: DecodeOptions, item_prompt: str | None) -> str:
        """The instruction: --prompt > the item's own (its question) > the family's task prompt."""
        spec = PromptSpec(tasks=dict(self.family.prompts))
        return task_prompt(spec, task, options.target_language, item_prompt, options.prompt)

    def requests(self, batch: list[Inputs], task: str, prompts: list[str]) -> list[Request]:
        """Every chat turn of a batch, in item order (see `windows_of`)."""
        out = []
        for i, (x, prompt) in enumerate(zip(batch, prompts, strict=True)):
            out += [Request(i, clips, prompt) for clips in self.windows_of(x, task)]
        return out

    def windows_of(self, x: Inputs, task: str) -> list[list[np.ndarray]]:
        """The clips of one item, per turn. asr and st: one turn per window, all of the audio;
        sv: one turn with the enrollment and the test clip; other tasks: the first window."""
        size = int(self.family.window_s * SAMPLE_RATE)
        audio = x[AUDIO]
        if task == "sv" and ENROLL in x:
            if self.family.clips_per_turn == 1:
                return [[pair_audio(x[ENROLL], audio, self.family.window_s)]]
            return [[x[ENROLL][:size], audio[:size]]]
        if task in JOINED_TASKS:
            return [[audio[s:s + size]] for s in range(0, max(len(audio), 1), size)]
        return [[audio[:size]]]

    def generate(self, batch: list[Inputs], options: DecodeOptions,
                 prompts: list[str | None] | None = None,
                 languages: list[str | None] | None = None) -> list[Hypothesis]:
        """Decode a batch in one left-padded generate call; equals one item at a time."""
        if not batch:
            return []
        options = self.resolve(options)
        known = find_task(options.task)
        task = known.name if known else options.task
        asks = [self.prompt_for(task, options, p) for p in (prompts or [None] * len(batch))]
        reqs = self.requests(batch, task, asks)
        yes_no = bool(known and known.yes_no)
        tokens, logits = self.run(reqs, options, first_logits=yes_no)
        probs = (gen.yes_probabilities(logits, self.yes_ids, self.no_ids) if logits is not None
                 else [{} for _ in reqs])
        hyps = []
        for i, x in enumerate(batch):
            mine = [j for j, r in enumerate(reqs) if r.item == i]
            texts = [self.tokenizer.decode(tokens[j], skip_special_tokens=True).strip()
                     for j in mine]
            extras = {"n_tokens": sum(len(tokens[j]) for j in mine), **probs[mine[0]],
                      **self.windowing(x, task, len(mine))}
            hyps.append(Hypothesis(text=" ".join(t for t in texts if t),
                                   language=options.target_language if task == "st" else None,
                                   extras=extras))
        return hyps

    def windowing(self, x: Inputs, task: str, turns: int) -> dict[str, Any]:
        """How the audio reached the model: `windows` of `window_s` seconds each, and the
        seconds left out (tasks that read one window)."""
        seconds = len(x[AUDIO]) / SAMPLE_RATE
        read = min(seconds, turns * self.family.window_s) if task != "sv" else seconds
        left = round(max(0.0, seconds - read), 3) if task != "sv" else 0.0
        return {"window_s": self.family.window_s, "windows": turns,
                **({"audio_left_out_s": left} if left else {})}

    def model_inputs(self, reqs: list[Request]) -> Any:
        """The processor's batch for these turns, on the model's device and float dtype."""
        inputs = self.family.inputs(self.processor, [r.prompt for r in reqs],
                                    [r.clips for r in reqs])
        return inputs.to(self.model.device).to(self.dtype)

    @torch.inference_mode()
    def run(self, reqs: list[Request], options: DecodeOptions,
            first_logits: bool = False) -> tuple[list[list[int]], torch.Tensor | None]:
        """Generated ids per turn (prompt and everything from EOS on cut), first-step logits."""
        inputs = self.model_inputs(reqs)
        self.last_inputs = inputs
        config = self.generation_config(options, first_logits)
        out = self.model.generate(**inputs, generation_config=config)
        eos = self.eos_ids()
        tokens = []
        for row in out.sequences[:, inputs["input_ids"].shape[1]:].tolist():
            tokens.append(row[:next((j for j, t in enumerate(row) if t in eos), len(row))])
        self.last_tokens = tokens
        logits = out.logits[0][::options.beam_size or 1].float() if first_logits else None
        return tokens, logits

    def eos_ids(self) -> list[int]:
        return gen.eos_ids(self.model, self.tokenizer)

    def generation_config(self, options: DecodeOptions, first_logits: bool = False) -> Any:
        """The model's own generation config with speechkit's deterministic settings on top."""
        config = copy.deepcopy(self.model.generation_config)
        config.update(max_new_tokens=options.max_new_tokens, num_beams=options.beam_size,
                      do_sample=False, temperature=None, top_p=None, top_k=None,
                      eos_token_id=self.eos_ids(), pad_token_id=self.tokenizer.pad_token_id,
                      return_dict_in_generate=True, output_logits=first_logits)
        return config

    def used_settings(self) -> dict[str, Any]:
        return {"device": self._device, "dtype": str(self.dtype).replace("torch.", ""),
                "quant": self.quant}

    def describe(self) -> dict[str, Any]:
        """Identity and every setting that shapes the output."""
        config = self.generation_config(DecodeOptions(beam_size=1, max_new_tokens=1))
        kept = {k: v for k, v in config.to_diff_dict().items() if k not in NOT_RECORDED}
        return {"name": self.name, "type": "hf-audio", "family": self.family.model_type,
                "class": self.family.model_class, "sha256": self.sha256, "quant": self.quant,
                "dtype": str(self.dtype).replace("torch.", ""), "device": self._device,
                "window_s": self.family.window_s, "padding_side": "left",
                "prompts": dict(self.family.prompts), "generation": kept}

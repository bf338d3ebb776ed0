"""SpeechLLM: frozen encoders -> bridge -> (LoRA) LLM, loaded from a speechkit checkpoint dir."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechkit.audio import VIDEO_FPS
from speechkit.errors import SpeechkitError
from speechkit.models.base import (
    AUDIO,
    ENROLL,
    SAMPLE_RATE,
    VIDEO,
    DecodeOptions,
    Hypothesis,
    Inputs,
    SpeechModel,
)
from speechkit.models.safe_load import check_safetensors, inside, load_weights, refuse_non_finite
from speechkit.models.speechllm import generate as gen
from speechkit.models.speechllm.bridges import Bridge, build_bridge
from speechkit.models.speechllm.checkpoint import (
    SPEC_FILE,
    WEIGHTS_FILE,
    CheckpointSpec,
    check_state_fits,
    read_spec,
)
from speechkit.models.speechllm.encoders import Encoder, load_encoder
from speechkit.models.speechllm.llm import (
    adapter_files,
    attach_lora,
    default_quant,
    fit_vocab,
    llm_config,
    load_llm,
    load_tokenizer,
    lora_config,
)
from speechkit.models.speechllm.lora_scale import lora_scaling, scaled_lora
from speechkit.models.speechllm.prompt_lora import PromptLoRA, attach_prompt_lora, check_gate_mode
from speechkit.models.speechllm.prompts import prompt_ids, render, split_ids
from speechkit.models.speechllm.prompts import task_prompt as make_prompt
from speechkit.models.speechllm.sources import anchor_sources, checkpoint_sha256, part_directories
from speechkit.tasks import find_task

ADDED_EMBEDDINGS = "llm.added_embeddings"  # [n_added_tokens, hidden] rows for added tokens
MAX_INPUT_S = 600.0  # seconds per item; longer audio is windowed by the encoder, never cut
ENCODER_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                  "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


class SpeechLLM(SpeechModel):
    """A speech LLM of the SALMONN / Llama-AVSR / WavLLM / SpeechVerse family."""

    max_input_s = MAX_INPUT_S
    modalities = frozenset({AUDIO, ENROLL})  # a trial's two recordings are joined into one input
    kind = "speech-LLM"
    tasks = frozenset()  # any: asr, st, sv, er, sqa, aac, and others with a custom --prompt
    uses = SpeechModel.uses | {"quant", "dtype", "language", "target_language", "prompt",
                               "lora_gate", "lora_scale"}

    def __init__(self, spec: CheckpointSpec, encoders: list[Encoder], bridge: Bridge, llm: Any,
                 tokenizer: Any, *, name: str, device: str, quant: str,
                 dtype: torch.dtype) -> None:
        self.spec, self.encoders, self.bridge = spec, encoders, bridge
        # The streams its encoders read; a trial's two recordings are joined into one audio.
        self.modalities = frozenset({e.stream for e in encoders}) | (
            {ENROLL} if AUDIO in {e.stream for e in encoders} else set())
        self.llm, self.tokenizer = llm, tokenizer
        self.name, self._device, self.quant, self.dtype = name, device, quant, dtype
        self.yes_ids = gen.variant_ids(tokenizer, gen.YES_VARIANTS)
        self.no_ids = gen.variant_ids(tokenizer, gen.NO_VARIANTS)
        self.last_tokens: list[list[int]] = []  # ids of the latest batch (benchmarks compare them)
        self.stats = {"audio_s": 0.0, "tokens": 0, "seconds": 0.0}
        self.sha256: str | None = None  # checkpoint dir + every part dir (set by load_speechllm)
        self.part_sha256: dict[str, str] = {}  # the digest of each of those
        self.prompt_lora: PromptLoRA | None = None  # WavLLM: LoRA gated by the prompt
        self.lora_scaling = lora_scaling(spec.llm.lora)  # what the LoRA layers apply

    @property
    def device(self) -> str:
        return self._device

    def resolve(self, options: DecodeOptions) -> DecodeOptions:
        """Unset beam size and token budget come from the checkpoint's decode defaults."""
        d = self.spec.decode
        return replace(options, beam_size=options.beam_size or d.beam_size,
                       max_new_tokens=options.max_new_tokens or d.max_new_tokens)

    def settings(self, options: DecodeOptions) -> gen.GenerationSettings:
        """Decoding settings for these options (stop strings come from the checkpoint)."""
        options = self.resolve(options)
        return gen.GenerationSettings(beam_size=options.beam_size,
                                      max_new_tokens=options.max_new_tokens,
                                      stop=tuple(self.spec.decode.stop),
                                      beam_rules=self._beam_rules())

    def _beam_rules(self) -> str:
        """SALMONN's code decodes with transformers 4.28's beam search (see beam_4_28.py); a
        checkpoint with stop strings keeps transformers' (which ends a beam on them)."""
        salmonn = self.spec.prompt.template == "salmonn" and not self.spec.decode.stop
        return gen.BEAM_4_28 if salmonn else "transformers"

    def streams(self, task: str) -> frozenset[str]:
        """The streams `task` reads among this model's: asr the audio, vsr the lip crops, avsr
        both (an item whose video has no face falls back to its audio)."""
        known = find_task(task)
        read = self.modalities - {ENROLL}
        need = read & set(known.modalities) if known else read
        return frozenset(need or read) | ({ENROLL} if task == "sv" and ENROLL in self.modalities
                                          else frozenset())

    def encode(self, batch: list[Inputs]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Every encoder over the items that have its stream, then the bridge; an item without
        a stream gets length 0 for that encoder's features."""
        feats = {}
        for enc in self.encoders:
            have = [i for i, x in enumerate(batch) if enc.stream in x]
            if not have:
                continue
            x, lengths = enc([batch[i][enc.stream] for i in have])
            full = x.new_zeros(len(batch), *x.shape[1:])
            full_len = torch.zeros(len(batch), dtype=lengths.dtype)
            full[have], full_len[have] = x, lengths
            feats[enc.modality] = (full.to(self._bridge_dtype()), full_len.to(x.device))
        with torch.inference_mode():
            return self.bridge(feats)

    def prompt_embeds(self, batch: list[Inputs],
                      prompts: list[tuple[list[int], list[int]] | str]) -> list[torch.Tensor]:
        """One [L_i, H] sequence per item: prompt ids before the speech, the bridge's outputs in
        order (each wrapped in its `prompt.wrap` text when the spec gives one), ids after. A
        prompt is a (before, after) pair from `prompt_ids`, or a text with the SPEECH sentinel."""
        bridged = self.encode(batch)
        table = self.llm.get_input_embeddings()
        out = []
        for i, prompt in enumerate(prompts):
            before, after = split_ids(prompt, self.tokenizer) if isinstance(prompt, str) else prompt
            speech = []
            for name, (x, ln) in bridged.items():
                n = int(ln[i])
                if n == 0:
                    continue
                opening, closing = self.spec.prompt.wrap.get(name, ("", ""))
                speech += [self._embed(table, opening), x[i, :n], self._embed(table, closing)]
            words = self._embed(table, before), self._embed(table, after)
            dtype = words[0].dtype
            out.append(torch.cat([words[0], *(p.to(dtype) for p in speech), words[1]]))
        return out

    def _embed(self, table: torch.nn.Module, text: str | list[int]) -> torch.Tensor:
        """Embeddings of a text, or of token ids."""
        if isinstance(text, str):
            text = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        t = torch.tensor(text, dtype=torch.long, device=table.weight.device)
        with torch.inference_mode():
            return table(t)

    def _bridge_dtype(self) -> torch.dtype:
        return next(self.bridge.parameters()).dtype

    def generate(self, batch: list[Inputs], options: DecodeOptions,
                 prompts: list[str | None] | None = None,
                 languages: list[str | None] | None = None) -> list[Hypothesis]:
        """Decode a batch in one padded LLM call; equals decoding the items one at a time.
        A verification trial (an `enroll` stream beside `audio`) is read as one waveform:
        enrollment, a second of silence, test (`pair_audio`)."""
        batch = [{**x, AUDIO: pair_audio(x[ENROLL], x[AUDIO], self.max_input_s)} if ENROLL in x
                 else x for x in batch]
        if not batch:
            return []
        start = time.perf_counter()
        known = find_task(options.task)
        task = known.name if known else options.task  # a custom task keeps its name
        prompts = prompts or [None] * len(batch)
        asks = [make_prompt(self.spec.prompt, task, options.target_language, p, options.prompt)
                for p in prompts]
        texts = [render(self.spec.prompt, a, self.tokenizer) for a in asks]
        yes_no = bool(known and known.yes_no) or any(_is_yes_no(t) for t in texts)
        settings = self.settings(options)
        embeds = self.prompt_embeds(batch, [prompt_ids(self.spec.prompt, a, self.tokenizer)
                                            for a in asks])
        with self.prompt_lora.gated(asks, self.tokenizer) if self.prompt_lora else nullcontext():
            out = gen.generate(self.llm, self.tokenizer, embeds, settings, first_logits=yes_no)
        self.last_tokens = out.tokens
        probs = (gen.yes_probabilities(out.first_logits, self.yes_ids, self.no_ids)
                 if out.first_logits is not None else [{} for _ in batch])
        hyps = []
        for x, ids, p in zip(batch, out.tokens, probs, strict=True):
            text = self.tokenizer.decode([t for t in ids if t < len(self.tokenizer)],
                                         skip_special_tokens=True)
            hyps.append(Hypothesis(text=gen.stop_text(text, settings.stop).strip(),
                                   language=options.target_language if task == "st" else None,
                                   extras={"n_tokens": len(ids), **p, **self.windowing(x)}))
        self.stats["audio_s"] += sum(_seconds(x) for x in batch)
        self.stats["tokens"] += sum(len(t) for t in out.tokens)
        self.stats["seconds"] += time.perf_counter() - start
        return hyps

    def windowing(self, x: Inputs) -> dict[str, Any]:
        """How the audio went through the encoders: in `windows` windows of `window_s` seconds,
        each encoded alone and joined in time (never cut); every encoder uses the same ones."""
        sizes = [e.window_samples for e in self.encoders if e.stream == AUDIO]
        if AUDIO not in x or not sizes:
            return {}
        size = min(sizes)
        return {"window_s": size / SAMPLE_RATE, "windows": max(1, -(-len(x[AUDIO]) // size))}

    def used_settings(self) -> dict[str, Any]:
        gate = {"lora_gate": self.prompt_lora.mode} if self.prompt_lora else {}
        return {"device": self._device, "dtype": str(self.dtype).replace("torch.", ""),
                "quant": self.quant, "lora_scaling": self.lora_scaling, **gate}

    def describe(self) -> dict[str, Any]:
        """Checkpoint identity and every setting that shapes the output."""
        s = self.spec
        return {"name": self.name, "type": "speechllm", "sha256": self.sha256,
                "parts_sha256": dict(self.part_sha256), "quant": self.quant,
                "dtype": str(self.dtype).replace("torch.", ""),
                "encoders": [f"{e.type}:{e.source}" for e in s.encoders],
                "bridge": s.bridge.type, "llm": s.llm.source, "template": s.prompt.template,
                **({"prompt_lora": self.prompt_lora.describe()} if self.prompt_lora else {}),
                "lora_scaling": self.lora_scaling, "audio_input": audio_input(s),
                "generation": {k: v for k, v in gen.GenerationSettings(
                    stop=tuple(s.decode.stop),
                    beam_rules=self._beam_rules()).to_dict().items()
                    if k not in ("beam_size", "max_new_tokens")}}  # those two: in `decode`


def audio_input(spec: CheckpointSpec) -> dict[str, Any]:
    """How audio reaches the encoders, recorded where speechkit goes past the official code:
    channels are averaged (ffmpeg's downmix; SALMONN's own code keeps channel 0), and audio
    longer than a window is encoded window by window, joined in time (SALMONN and Llama-AVSR
    cut at 30 s: their input is the first window; WavLLM runs WavLM over the whole clip)."""
    audio = [e for e in spec.encoders if e.stream == AUDIO]
    if not audio:
        return {}
    return {"channels": "downmix", "window_s": min(e.window_s for e in audio),
            "min_s": max(e.min_s for e in audio)}


PAIR_GAP_S = 1.0  # s of silence between the two recordings of a verification trial


def pair_audio(enroll: np.ndarray, test: np.ndarray, max_s: float) -> np.ndarray:
    """One input from two recordings (SALMONN-style speaker verification): each is cut to
    fit half of the model's window, joined by a second of silence."""
    half = int((max_s - PAIR_GAP_S) / 2 * SAMPLE_RATE)
    gap = np.zeros(int(PAIR_GAP_S * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([enroll[:half], gap, test[:half]]).astype(np.float32)


def _seconds(x: Inputs) -> float:
    """An item's duration: its audio, else its lip crops (25 fps)."""
    return len(x[AUDIO]) / SAMPLE_RATE if AUDIO in x else len(x.get(VIDEO, ())) / VIDEO_FPS


def _is_yes_no(text: str) -> bool:
    return "yes or no" in text.lower()


def load_speechllm(path: str, device: str = "cpu", quant: str | None = None,
                   dtype: str | None = None, lora_gate: str | float | None = None,
                   lora_scale: float | None = None) -> SpeechLLM:
    """Assemble a checkpoint dir: encoders, bridge weights, LLM (quantized) and LoRA adapter.

    Everything is checked before any weights load: the spec, every component directory
    (custom code is refused), the files inside the checkpoint and the bridge tensors.
    `lora_scale` overrides the LoRA scaling (SALMONN's activation tuning)."""
    root = Path(path)
    spec = anchor_sources(read_spec(root), root)
    spec = replace(spec, llm=replace(spec.llm, lora=scaled_lora(spec.llm.lora, lora_scale, path)))
    parts = part_directories(spec)
    state, adapter_dir = _checked_files(root, spec)
    quant = quant or default_quant(device)
    cuda = device.startswith("cuda")
    enc_dtype = ENCODER_DTYPES.get(dtype or "", torch.float16 if cuda else torch.float32)
    encoders = [load_encoder(e, device, enc_dtype) for e in spec.encoders]
    for enc in encoders:
        want = spec.bridge.inputs[enc.modality].in_dim
        if enc.dim != want:
            raise SpeechkitError(f"{path}: encoder {enc.modality!r} outputs {enc.dim} features "
                                 f"but bridge.inputs.{enc.modality}.in_dim is {want}")
    hidden = int(llm_config(spec.llm).hidden_size)
    if hidden != spec.bridge.out_dim:
        raise SpeechkitError(f"{path}: bridge.out_dim is {spec.bridge.out_dim} but LLM "
                             f"{spec.llm.source} has hidden size {hidden}")
    bridge = build_bridge(spec.bridge)
    added = _load_trainables(root, spec, state, bridge, encoders)
    bridge_dtype = torch.bfloat16 if cuda else torch.float32
    bridge.to(device=device, dtype=bridge_dtype).eval().requires_grad_(False)
    for enc in encoders:
        enc.to(device)
    tokenizer = load_tokenizer(spec.llm, spec.added_tokens)
    llm = load_llm(spec.llm, device, quant, ENCODER_DTYPES.get(dtype or ""))
    hidden = llm.get_input_embeddings().weight.shape[1]
    if hidden != spec.bridge.out_dim:
        raise SpeechkitError(f"{path}: bridge.out_dim is {spec.bridge.out_dim} but LLM "
                             f"{spec.llm.source} has hidden size {hidden}")
    fit_vocab(llm, tokenizer, spec.llm, added)
    if spec.llm.lora is not None and adapter_dir is not None:
        llm = attach_lora(llm, adapter_dir, spec.llm.lora, merge=quant not in ("4bit", "8bit"))
    model = SpeechLLM(spec, encoders, bridge, llm, tokenizer, name=str(path), device=device,
                      quant=quant, dtype=next(bridge.parameters()).dtype)
    if spec.llm.prompt_lora is not None:
        model.prompt_lora = attach_prompt_lora(llm, root, spec.llm.prompt_lora, f"{root / SPEC_FILE}:")
        model.prompt_lora.mode = check_gate_mode(lora_gate)
    elif lora_gate is not None:
        raise SpeechkitError(f"--lora-gate: {path} has no prompt-aware LoRA (llm.prompt_lora in "
                             f"{SPEC_FILE}); leave the option out")
    _refuse_non_finite_modules(path, encoders, bridge, llm)
    model.sha256, model.part_sha256 = checkpoint_sha256(root, parts)
    return model


def _refuse_non_finite_modules(path: str, encoders: list, bridge: torch.nn.Module,
                               llm: torch.nn.Module) -> None:
    """Weights holding NaN or infinities stop the load, naming the tensor: with them every item
    would come out "ok" with nonsense text. Quantized (integer) weights are not checked."""
    for enc in encoders:
        refuse_non_finite(dict(enc.named_parameters()), f"{path}: encoder {enc.modality!r}")
    refuse_non_finite(dict(bridge.named_parameters()), f"{path}: bridge")
    refuse_non_finite(dict(llm.named_parameters()), f"{path}: LLM")


def _checked_files(root: Path, spec: CheckpointSpec) -> tuple[dict[str, torch.Tensor],
                                                              Path | None]:
    """The bridge tensors and the adapter directory, each file resolved inside `root`."""
    where = f"{root / SPEC_FILE}:"
    state = load_weights(inside(root, WEIGHTS_FILE, f"{where} bridge weights"))
    if spec.llm.prompt_lora is not None:  # read after the LLM loads; checked now
        check_safetensors(inside(root, spec.llm.prompt_lora.path, f"{where} llm.prompt_lora.path"))
    if spec.llm.lora is None:
        return state, None
    adapter_dir = inside(root, spec.llm.lora.path, f"{where} llm.lora.path")
    config, weights = adapter_files(adapter_dir)
    for file in (config, weights):
        inside(root, str(file), f"{where} llm.lora.path file")
    lora_config(adapter_dir, spec.llm.lora)
    if weights.suffix == ".safetensors":
        check_safetensors(weights)
    return state, adapter_dir


def _load_trainables(root: Path, spec: CheckpointSpec, state: dict[str, torch.Tensor],
                     bridge: Bridge, encoders: list[Encoder]) -> torch.Tensor | None:
    """Load bridge + layer weights from the safetensors file; one message for key problems."""
    expected = {f"bridge.{k}": v for k, v in bridge.state_dict().items()}
    for enc in encoders:
        if enc.layer_weights is not None:
            expected[f"encoders.{enc.modality}.layer_weights"] = enc.layer_weights
    optional = {ADDED_EMBEDDINGS} if spec.added_tokens else set()
    check_state_fits(state, expected, f"{root / WEIGHTS_FILE} does not fit speechkit.json", "spec",
                     optional)
    bridge.load_state_dict({k[len("bridge."):]: v for k, v in state.items()
                            if k.startswith("bridge.")})
    with torch.no_grad():
        for enc in encoders:
            if enc.layer_weights is not None:
                enc.layer_weights.copy_(state[f"encoders.{enc.modality}.layer_weights"])
    return state.get(ADDED_EMBEDDINGS)

"""WavLLM's side of `benchmarks/parity.py`, run by the official code's own Python.

    python benchmarks/parity_wavllm.py build --official SpeechT5/WavLLM --out DIR
    python benchmarks/parity_wavllm.py run --official SpeechT5/WavLLM --parts DIR --clips a.wav ... --out DIR

`build` writes tiny random Whisper and WavLM parts where the official code reads them, builds
`SpeechLLMModel` through fairseq (`--task speechllm_task --arch speechllm_model`, with the
task settings `inference/generate.py` makes: Whisper + WavLM with layer weights, LoRA r 32 on
wq/wk/wv/wo, the prompt gate `second_stage_update_scale`), makes every tensor random (LoRA B
and the frozen encoders too) and saves the checkpoint as fairseq training does
(`Trainer.state_dict`: `{"cfg": ..., "model": ..., "optimizer_history": ...}`). `run` loads it
with `checkpoint_utils.load_model_ensemble` as `generate.py` does and decodes each clip through
the official test path: a one-line manifest read by `SpeechLLMDataset` (`prompt_bulid`:
the Llama-2 chat text around `<SPEECH>`), its collater, the prompt after the speech forced as
prefix tokens and `task.inference_step` with WavLLM's `SequenceGenerator`, greedy (`--beam 1`).
WavLLM's own script samples (`--sampling --beam 1 --temperature 0.5`); the comparison needs a
deterministic decoder, so it runs without `--sampling`. Beam search is not compared: the official
decoder fails with `--beam` above 1 (`forward_generate` joins the left prompt of one row to the
speech of `beam` rows: "Sizes of tensors must match except in dimension 1").

fairseq counts the forced prompt tokens in `--max-len-b` (512 in `inference_sft.sh`): here it
gets their number on top of --max-new-tokens, so both sides allow the same answer length.
fairseq's batch iterator (a Cython extension, not built here) is replaced by the collater of the
one clip, as `--max-sentences 1` gives. Imports nothing from speechkit; see
`parity_wavllm_setup.py` for what is set around the official code.
"""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import torch
from parity_cli import official_parser
from parity_random import eos_row, randomize
from parity_wavllm_setup import LLAMA_INIT, import_official, write_parts

SEED = 0
LORA_R = 32  # generate.py: task.cfg.lora_r = 32, lora_alpha = 32
# generate.py's task settings for the released model (set on the task after setup_task)
TASK_SETTINGS = dict(is_whisper=True, whisper_with_decoder=False, sft_stage=True, llama_2=True,
                     use_lora=True, lora_r=LORA_R, lora_alpha=LORA_R,
                     freeze_audio_encoder=False, use_wavlm=True, wavlm_output_weight=True,
                     alpaca_text=True, prompt_bulid=True, load_pretrained_model=False,
                     second_stage_update_scale=True, scale_with_audio=False, scale_0_1=False)
SUBSET = "clip"


def _args(parser, data: Path, root: Path, *more: str):
    from fairseq import options

    return options.parse_args_and_arch(parser, [
        str(data), "--user-dir", str(root / "wavllm"), "--task", "speechllm_task",
        "--tokenizer-path", str(root / "wavllm" / "tokenizer" / "tokenizer.model"), *more])


def _task(cfg):
    from fairseq import tasks

    task = tasks.setup_task(cfg.task)
    for key, value in TASK_SETTINGS.items():
        setattr(task.cfg, key, value)
    task.cfg.processor_path = "openai/whisper-large-v2"  # generate.py
    task.cfg.wavlm_processor_path = "microsoft/wavlm-base"
    return task


def _manifest(data: Path, root: Path, clip: Path | None = None, prompt: str = "x") -> None:
    """The data directory: WavLLM's dict.txt and a one-line `clip.tsv` (the answer column is
    only needed to exist: generation reads the prompt part of it)."""
    import soundfile

    data.mkdir(parents=True, exist_ok=True)
    (data / "dict.txt").write_text((root / "wavllm" / "test_data" / "dict.txt").read_text())
    frames = soundfile.info(str(clip)).frames if clip else 16000
    (data / f"{SUBSET}.tsv").write_text("id\taudio\tn_frames\tprompt\ttgt_text\twith_speech\n"
                                        f"0\t{clip or 'none.wav'}\t{frames}\t{prompt}\tx\tTrue\n")


def build(root: Path, out: Path, prompt: str) -> None:
    """The parts, then a SpeechLLMModel with random tensors saved as fairseq training saves it."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)
    import_official(root)
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.trainer import Trainer

    torch.manual_seed(SEED)
    parts = write_parts(root / "wavllm" / "tokenizer" / "tokenizer.model", out)
    _manifest(out / "data", root)
    cfg = convert_namespace_to_omegaconf(_args(options.get_training_parser(), out / "data", root,
                                               "--arch", "speechllm_model"))
    task = _task(cfg)
    torch.manual_seed(SEED + 1)
    model = task.build_model(cfg.model)
    llama = model.gpt_model.model_llama
    with torch.no_grad():
        for p in llama.parameters():
            if p.dim() > 1:
                p.normal_(0.0, LLAMA_INIT)
    randomize(list(model.parameters()))
    _eos_prone(llama, 2, task.build_tokenizer(None).encode(f'"{prompt}"', bos=False, eos=False))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    criterion = torch.nn.Module()
    trainer = types.SimpleNamespace(
        cfg=cfg, model=model, criterion=criterion, get_criterion=lambda: criterion,
        optimizer=optimizer, lr_scheduler=types.SimpleNamespace(state_dict=lambda: {"best": None}),
        _optim_history=None, get_num_updates=lambda: 0, task=task, is_fsdp=False,
        cumulative_training_time=lambda: 0.0, _gathered_optim_state=None)
    torch.save(Trainer.state_dict(trainer), out / "final.pt")
    (out / "parts.json").write_text(json.dumps({**parts, "ckpt": str(out / "final.pt")}))


@torch.inference_mode()
def _eos_prone(llama, eos: int, prompt_ids: list[int], seed: int = 0) -> None:
    """parity_random.eos_prone for the official Meta-layout Llama: its EOS output row is set from
    the final-norm states of greedy runs of its own `forward_generate` (LoRA gated by the
    prompt's gate) from random speech embeddings."""
    gen = torch.Generator().manual_seed(seed)
    states: list[torch.Tensor] = []
    hook = llama.norm.register_forward_hook(lambda _m, _args, out: states.append(out[0]))
    try:
        for _ in range(4):
            speech = {"encoder_out": torch.randn(1, 8, llama.params.dim, generator=gen) * 0.5}
            tokens, cache = torch.tensor([[1]]), {}  # BOS after the speech, as the generator
            for step in range(40):
                logits = llama.forward_generate(0, tokens, step, None, speech, -1,
                                                torch.tensor([prompt_ids]), incremental_state=cache)
                tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    finally:
        hook.remove()
    scale, direction = eos_row(torch.cat(states), llama.output.weight)
    llama.output.weight[eos] = scale * direction


def run(root: Path, parts_dir: Path, clips: list[Path], prefix_clips: list[Path], prompt: str,
        max_new_tokens: int, out: Path) -> None:
    """Greedy ids, first-step logits and prefix embeddings of each clip; only the prefix
    embeddings of each of `prefix_clips`."""
    parts_dir, out = parts_dir.resolve(), out.resolve()
    clips = [c.resolve() for c in clips]
    prefix_clips = [c.resolve() for c in prefix_clips]
    os.chdir(parts_dir)
    import_official(root)
    from fairseq import checkpoint_utils, options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    ckpt = json.loads((parts_dir / "parts.json").read_text())["ckpt"]
    models, saved = None, None
    for clip in clips + prefix_clips:
        data = out / "data"
        _manifest(data, root, clip, prompt)
        cfg = convert_namespace_to_omegaconf(_args(
            options.get_generation_parser(default_task="speechllm_task"), data, root,
            "--path", ckpt, "--gen-subset", SUBSET, "--beam", "1", "--nbest", "1",
            "--max-len-a", "0", "--max-len-b", "0"))
        task = _task(cfg)
        if models is None:
            models, saved = checkpoint_utils.load_model_ensemble([ckpt], task=task)
        task.load_dataset(SUBSET, task_cfg=saved.task)
        greedy = decode(task, models, cfg, max_new_tokens if clip in clips else 1)
        save_file({"logits": greedy["logits"].contiguous(), "embeds": greedy["embeds"].contiguous()},
                  str(out / f"{clip.stem}.safetensors"))
        if clip in clips:
            (out / f"{clip.stem}.json").write_text(json.dumps(
                {"greedy": greedy["ids"], "greedy_gaps": greedy["gaps"]}))


@torch.inference_mode()
def decode(task, models, cfg, max_new_tokens: int) -> dict:
    """generate.py's loop body for the one clip: the prompt after the speech (prompt_masks) is
    the forced prefix; the decoder's calls are recorded for the first-step logits, the prefix
    embeddings and the gap between the two best logits of each answer step."""
    dataset = task.dataset(SUBSET)
    sample = dataset.collater([dataset[0]])
    prefix_size = int(sample["net_input"]["prompt_masks"].sum(-1).max())
    prefix = sample["target"][:, :prefix_size]
    cfg.generation.max_len_b = prefix_size + max_new_tokens  # the forced prompt on top
    for m in models:
        m.eval()
    generator = task.build_generator(models, cfg.generation)
    gpt = models[0].gpt_model
    calls = []
    inner = gpt.forward_generate

    def recording(tid, tokens, start_pos, examples, audio_out, *args, **kwargs):
        out = inner(tid, tokens, start_pos, examples, audio_out, *args, **kwargs)
        calls.append({"tokens": tokens[0].clone(), "audio": audio_out["encoder_out"][0].clone(),
                      "logits": out[0][0, -1].float().clone()})
        return out

    gpt.forward_generate = recording
    try:
        hypos = task.inference_step(generator, models, sample, prefix_tokens=prefix)
    finally:
        del gpt.forward_generate
    llama = gpt.model_llama
    left = sample["net_input"]["left_prompts"][0]
    fed = calls[prefix_size]["tokens"]  # BOS, then the forced prompt
    embeds = torch.cat([llama.tok_embeddings(left), calls[0]["audio"], llama.tok_embeddings(fed)])
    ids = hypos[0][0]["tokens"].tolist()[prefix_size:]
    top = torch.stack([c["logits"] for c in calls[prefix_size:]]).topk(2, dim=-1).values
    return {"ids": ids, "logits": calls[prefix_size]["logits"], "embeds": embeds.float(),
            "gaps": (top[:, 0] - top[:, 1]).tolist()}


def main() -> None:
    ap = official_parser(__doc__.splitlines()[0],
                         "the WavLLM folder of a microsoft/SpeechT5 checkout, its fairseq "
                         "submodule checked out",
                         "Based on the attached audio, generate a comprehensive text "
                         "transcription of the spoken content.",
                         max_new_tokens=512)  # inference_sft.sh --max-len-b
    a = ap.parse_args()
    if a.step == "build":
        build(a.official.resolve(), a.out, a.prompt)
    else:
        run(a.official.resolve(), a.parts, a.clips, a.prefix_clips, a.prompt, a.max_new_tokens,
            a.out)


if __name__ == "__main__":
    main()

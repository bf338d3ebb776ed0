"""A small Llama-AVSR state dict with the official key names and shapes (random values), the
Llama-3-like tiny LLM directory it was "trained" from, and lip crops cut from real video."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import torch

SEED = 0
CORPUS = ["transcribe speech to text", "transcribe video to text",
          "transcribe speech and video to text", "bin blue at f two now please"] * 4
WHISPER = dict(d_model=64, encoder_layers=2, encoder_attention_heads=1, encoder_ffn_dim=128,
               num_mel_bins=80, max_source_positions=1500)
AVH = dict(width=4, dim=64, layers=2, ffn=128, conv_pos=4, groups=4)  # AV-HuBERT, tiny
LORA_INNER, PROJ_HIDDEN, AUDIO_RATE, VIDEO_RATE = 4, 48, 3, 2
ADDED = ["<pad>", "<audio>", "</audio>", "<video>", "</video>"]


def tiny_llama3(directory: Path) -> Path:
    """A random 2-layer Llama (GQA) with a byte-level BPE tokenizer that, like Llama 3's, has
    no <pad> token; saved as a transformers directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", bos, eos],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                   unk_token="<unk>")
    fast.save_pretrained(directory)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, initializer_range=0.2,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         tie_word_embeddings=False)
    torch.manual_seed(SEED)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def _rand(g: torch.Generator, *shape: int, scale: float | None = None) -> torch.Tensor:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return torch.randn(*shape, generator=g) * (scale if scale is not None else fan_in ** -0.5)


def _bn(g: torch.Generator, prefix: str, n: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}weight": 1 + 0.1 * torch.randn(n, generator=g),
            f"{prefix}bias": 0.1 * torch.randn(n, generator=g),
            f"{prefix}running_mean": 0.1 * torch.randn(n, generator=g),
            f"{prefix}running_var": 0.5 + torch.rand(n, generator=g),
            f"{prefix}num_batches_tracked": torch.tensor(100)}


def _resnet(g: torch.Generator, p: str, w: int) -> dict[str, torch.Tensor]:
    sd = {f"{p}frontend3D.0.weight": _rand(g, w, 1, 5, 7, 7), **_bn(g, f"{p}frontend3D.1.", w),
          f"{p}frontend3D.2.weight": torch.full((w,), 0.25)}
    inplanes = w
    for s in range(4):
        planes = w * 2 ** s
        for b in range(2):
            q = f"{p}trunk.layer{s + 1}.{b}."
            sd |= {f"{q}conv1.weight": _rand(g, planes, inplanes, 3, 3), **_bn(g, f"{q}bn1.", planes),
                   f"{q}relu1.weight": torch.full((planes,), 0.25),
                   f"{q}conv2.weight": _rand(g, planes, planes, 3, 3), **_bn(g, f"{q}bn2.", planes),
                   f"{q}relu2.weight": torch.full((planes,), 0.25)}
            if b == 0 and s > 0:
                sd |= {f"{q}downsample.0.weight": _rand(g, planes, inplanes, 1, 1),
                       **_bn(g, f"{q}downsample.1.", planes)}
            inplanes = planes
    return sd


def _linear(g: torch.Generator, prefix: str, out: int, inp: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}weight": _rand(g, out, inp), f"{prefix}bias": _rand(g, out, scale=0.1)}


def _norm(g: torch.Generator, prefix: str, n: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}weight": 1 + 0.1 * torch.randn(n, generator=g),
            f"{prefix}bias": 0.1 * torch.randn(n, generator=g)}


def avhubert_state(g: torch.Generator, p: str = "video_encoder.") -> dict[str, torch.Tensor]:
    """AV-HuBERT (fairseq AVHubertModel) keys, with Llama-AVSR's LoRA on the layers' q and v."""
    d, k = AVH["dim"], AVH["conv_pos"]
    sd = _resnet(g, f"{p}feature_extractor_video.resnet.", AVH["width"])
    sd |= _linear(g, f"{p}feature_extractor_video.proj.", d, 8 * AVH["width"])
    sd |= _linear(g, f"{p}feature_extractor_audio.proj.", d, 104)
    sd |= _norm(g, f"{p}layer_norm.", 2 * d) | _linear(g, f"{p}post_extract_proj.", d, 2 * d)
    sd |= {f"{p}encoder.pos_conv.0.bias": _rand(g, d, scale=0.1),
           f"{p}encoder.pos_conv.0.weight_g": 0.5 + torch.rand(1, 1, k, generator=g),
           f"{p}encoder.pos_conv.0.weight_v": _rand(g, d, d // AVH["groups"], k)}
    for i in range(AVH["layers"]):
        q = f"{p}encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd |= _linear(g, f"{q}self_attn.{name}.", d, d)
        for which in ("Q", "V"):
            sd[f"{q}self_attn.lora_down_{which}.weight"] = _rand(g, 16, d)
            sd[f"{q}self_attn.lora_up_{which}.weight"] = _rand(g, d, 16, scale=0.05)
        sd |= _norm(g, f"{q}self_attn_layer_norm.", d) | _norm(g, f"{q}final_layer_norm.", d)
        sd |= _linear(g, f"{q}fc1.", AVH["ffn"], d) | _linear(g, f"{q}fc2.", d, AVH["ffn"])
    sd |= _norm(g, f"{p}encoder.layer_norm.", d)
    sd |= {f"{p}mask_emb": torch.rand(104, generator=g), **_linear(g, f"{p}final_proj.", 32, d),
           f"{p}label_embs_concat": torch.rand(50, 32, generator=g)}
    return sd


def llama_avsr_state(llm_dir: Path, audio: bool = True, video: bool = True) -> dict[str, torch.Tensor]:
    """A full Llama-AVSR state dict (official names and layout) at small sizes."""
    from transformers import AutoTokenizer, LlamaForCausalLM, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    g = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    llm = LlamaForCausalLM.from_pretrained(llm_dir)
    n_tok = len(AutoTokenizer.from_pretrained(llm_dir))
    llm.resize_token_embeddings(n_tok + len(ADDED), mean_resizing=False)
    sd = {f"llm.{k}": v.clone() for k, v in llm.state_dict().items()}
    hidden, kv = llm.config.hidden_size, llm.config.num_key_value_heads * llm.config.head_dim
    for i in range(llm.config.num_hidden_layers):
        q = f"llm.model.layers.{i}.self_attn."
        sd |= {f"{q}lora_down_Q.weight": _rand(g, LORA_INNER, hidden),
               f"{q}lora_up_Q.weight": _rand(g, hidden, LORA_INNER),
               f"{q}lora_down_V.weight": _rand(g, LORA_INNER, hidden),
               f"{q}lora_up_V.weight": _rand(g, kv, LORA_INNER)}
    if audio:
        enc = WhisperEncoder(WhisperConfig(**WHISPER))
        sd |= {f"audio_encoder.{k}": v.clone() for k, v in enc.state_dict().items()}
        sd |= _linear(g, "audio_proj.0.", PROJ_HIDDEN, WHISPER["d_model"] * AUDIO_RATE)
        sd |= _linear(g, "audio_proj.2.", hidden, PROJ_HIDDEN)
    if video:
        sd |= avhubert_state(g)
        sd |= _linear(g, "video_proj.0.", PROJ_HIDDEN, AVH["dim"] * VIDEO_RATE)
        sd |= _linear(g, "video_proj.2.", hidden, PROJ_HIDDEN)
    return sd


def center_lip_crops(path: Path, ffmpeg: str, seconds: float | None = None) -> np.ndarray:
    """Frames at 25 fps, grayscale, scaled to 96x96, center 88x88, normalized as the model input
    ((x / 255 - 0.421) / 0.165): a fixed crop standing in for landmark-based lip crops."""
    cut = ["-t", str(seconds)] if seconds else []
    raw = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(path), *cut, "-an",
                          "-vf", "fps=25,scale=96:96,format=gray", "-f", "rawvideo", "-"],
                         capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 96, 96)[:, 4:92, 4:92]
    return ((frames.astype(np.float32) / 255.0 - 0.421) / 0.165).astype(np.float32)


def tiny_llama_avsr(root: Path) -> Path:
    """A converted tiny AVSR checkpoint (Whisper audio + AV-HuBERT video), via the converter."""
    from speechkit.models.speechllm.importers.llama_avsr import convert_llama_avsr

    llm_dir = tiny_llama3(root / "llama")
    torch.save(llama_avsr_state(llm_dir), root / "model.pth")
    convert_llama_avsr(root / "model.pth", root / "avsr", llm=str(llm_dir), video_norm_first=True)
    return root / "avsr"

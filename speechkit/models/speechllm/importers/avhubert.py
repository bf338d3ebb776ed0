"""AV-HuBERT's video path (fairseq `AVHubertModel` keys) onto speechkit's video encoder.

Sizes come from the tensor shapes: the ResNet width from the 3-D stem, the transformer width
from the visual projection, the position-convolution kernel and groups from its weight, and
heads = width / 64 (AV-HuBERT Base 768/12, Large 1024/16). Whether layers normalize first is
not in the shapes: AV-HuBERT Large (width 1024) does, Base does not; `norm_first` overrides.
The position convolution's weight norm (g, v) and Llama-AVSR's optional LoRA on the encoder's
q/v projections (`lora_down/up_Q/V`) are folded into plain weights.
"""

from __future__ import annotations

import re

import torch

from speechkit.errors import SpeechkitError
from speechkit.models.speechllm.encoders.video import VideoEncoderConfig, VisualSpeechNet
from speechkit.models.speechllm.importers.keys import KeyLedger, check_fits

HEAD_DIM = 64  # AV-HuBERT attention head size in every released size
LARGE_DIM = 1024  # AV-HuBERT Large: pre-norm layers
AVHUBERT_LORA_SCALING = 2.0  # Llama-AVSR's LoRA on AV-HuBERT layers (scaling_lora = 2)
# Source prefix (after "video_encoder.") -> speechkit video encoder prefix.
RENAMES = (("feature_extractor_video.resnet.", "frontend."), ("feature_extractor_video.proj.", "proj."),
           ("layer_norm.", "layer_norm."), ("post_extract_proj.", "post_extract_proj."),
           ("encoder.", "encoder."))
# Keys of the pretraining model that video-only inference never reads.
UNUSED = (("feature_extractor_audio.", "AV-HuBERT audio branch (the video encoder reads lips only)"),
          ("mask_emb", "AV-HuBERT pretraining mask embedding"),
          ("final_proj.", "AV-HuBERT pretraining head"),
          ("label_embs_concat", "AV-HuBERT pretraining cluster embeddings"))
_LORA = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.lora_(down|up)_([QV])\.weight$")
_POS = "encoder.pos_conv.0."


def video_config(ledger: KeyLedger, prefix: str, norm_first: bool | None) -> VideoEncoderConfig:
    """The encoder's sizes, read from the tensor shapes under `prefix`."""
    def shape(key: str) -> tuple[int, ...]:
        return tuple(ledger.state[prefix + key].shape) if ledger.has(prefix + key) else ()

    stem = shape("feature_extractor_video.resnet.frontend3D.0.weight")
    proj = shape("feature_extractor_video.proj.weight")
    if len(stem) != 5 or len(proj) != 2:
        raise SpeechkitError(f"{ledger.source}: {prefix}* is not an AV-HuBERT model (no "
                             "feature_extractor_video.resnet.frontend3D / proj weights)")
    dim = proj[0]
    layers = {int(m.group(1)) for k in ledger.under(prefix + "encoder.layers.")
              if (m := re.match(r"encoder\.layers\.(\d+)\.", k[len(prefix):]))}
    pos = shape("encoder.pos_conv.0.weight_v") or shape(
        "encoder.pos_conv.0.parametrizations.weight.original1") or shape("encoder.pos_conv.0.weight")
    has_prelu = ledger.has(prefix + "feature_extractor_video.resnet.frontend3D.2.weight")
    config = VideoEncoderConfig(
        dim=dim, layers=len(layers), heads=max(1, dim // HEAD_DIM),
        ffn_dim=shape("encoder.layers.0.fc1.weight")[0] if layers else dim * 4,
        norm_first=dim >= LARGE_DIM if norm_first is None else norm_first,
        conv_pos=pos[2] if len(pos) == 3 else 1, conv_pos_groups=dim // pos[1] if pos else 1,
        resnet_width=stem[0], activation="prelu" if has_prelu else "relu",
        audio_slot=ledger.has(prefix + "post_extract_proj.weight"))
    config.check(f"{ledger.source} ({prefix}*)")
    return config


def video_tensors(ledger: KeyLedger, prefix: str, config: VideoEncoderConfig,
                  lora_scaling: float = AVHUBERT_LORA_SCALING) -> dict[str, torch.Tensor]:
    """The video encoder's state dict from the keys under `prefix` (each key mapped or dropped)."""
    out: dict[str, torch.Tensor] = {}
    lora: dict[tuple[int, str, str], torch.Tensor] = {}
    for key in ledger.under(prefix):
        name = key[len(prefix):]
        why = next((w for p, w in UNUSED if name.startswith(p)), None)
        if why is not None:
            ledger.drop(key, why)
        elif m := _LORA.match(name):
            lora[(int(m.group(1)), m.group(3), m.group(2))] = ledger.take(key).float()
        elif not name.startswith(_POS):
            target = next((new + name[len(old):] for old, new in RENAMES if name.startswith(old)),
                          None)
            if target is not None:
                out[target] = ledger.take(key)
    out.update(_position_conv(ledger, prefix + _POS))
    _fold_lora(out, lora, lora_scaling, ledger.source)
    with torch.device("meta"):
        net = VisualSpeechNet(config)
    check_fits(net.state_dict(), out, "AV-HuBERT video encoder", ledger.source)
    return out


def _position_conv(ledger: KeyLedger, p: str) -> dict[str, torch.Tensor]:
    """The position convolution's weight, with fairseq's weight norm (over dim 2) folded in."""
    out = {"encoder.pos_conv.bias": ledger.take(p + "bias")}
    for g_key, v_key in (("weight_g", "weight_v"),
                         ("parametrizations.weight.original0", "parametrizations.weight.original1")):
        if ledger.has(p + g_key) and ledger.has(p + v_key):
            g, v = ledger.take(p + g_key).float(), ledger.take(p + v_key).float()
            norm = v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
            out["encoder.pos_conv.weight"] = (g * v / norm).to(ledger.state[p + v_key].dtype)
            return out
    out["encoder.pos_conv.weight"] = ledger.take(p + "weight")
    return out


def _fold_lora(out: dict[str, torch.Tensor], lora: dict[tuple[int, str, str], torch.Tensor],
               scaling: float, source: str) -> None:
    """W += scaling * up @ down for each LoRA pair on a layer's q or v projection."""
    for layer, which in sorted({(i, w) for i, w, _ in lora}):
        down, up = lora.get((layer, which, "down")), lora.get((layer, which, "up"))
        if down is None or up is None:
            raise SpeechkitError(f"{source}: video encoder layer {layer} has half a LoRA pair "
                                 f"on {which}; the checkpoint is damaged")
        key = f"encoder.layers.{layer}.self_attn.{which.lower()}_proj.weight"
        if key not in out:
            raise SpeechkitError(f"{source}: LoRA on video encoder layer {layer} without its "
                                 f"{which.lower()}_proj weight")
        w = out[key]
        out[key] = (w.float() + scaling * up @ down).to(w.dtype)

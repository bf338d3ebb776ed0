"""The video encoder of audio-visual speech LLMs: lip crops (25 fps) in, one feature per frame out.

A 3-D conv + ResNet-18 front-end (`visual_frontend.py`) and a back-end, written here in plain
PyTorch: type `avhubert`, AV-HuBERT's transformer (`video_transformer.py`), or type
`auto_avsr`, auto_avsr's Conformer (`video_conformer.py`). Weights come from a
local directory (`config.json` with the sizes below, plus `*.safetensors` or a tensors-only
`*.bin`), e.g. the one `speechkit convert llama-avsr` writes from a Llama-AVSR checkpoint, or
source "random" (seeded small weights from `encoders[].config`, for tests). No pretrained
lip-reading weights ship with speechkit or sit in the public model registries it reads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from speechkit.audio import VIDEO_FPS
from speechkit.errors import SpeechkitError
from speechkit.media.lips.geometry import MEAN as LIP_MEAN
from speechkit.media.lips.geometry import STD as LIP_STD
from speechkit.models.safe_load import load_weights
from speechkit.models.speechllm.checkpoint import EncoderSpec, load_state_strict
from speechkit.models.speechllm.encoders.base import Encoder
from speechkit.models.speechllm.encoders.video_conformer import ConformerBackEnd
from speechkit.models.speechllm.encoders.video_transformer import TransformerBackEnd
from speechkit.models.speechllm.encoders.visual_frontend import ACTIVATIONS, STEM_KERNEL, VisualFrontEnd

CROP_SIZE = 88  # the model input is the center 88x88 of a 96x96 mouth crop
FRONTEND_FRAMES = 64  # frames through the 3-D conv + ResNet at a time: bounded activations
FRONTEND_CONTEXT = STEM_KERNEL[0] // 2  # neighbour frames the 3-D conv reads on each side
CONFIG_FILE = "config.json"
RANDOM_SEED = 0  # source "random": the same weights on every load
BACKENDS = ("transformer", "conformer")
# auto_avsr's visual encoder (mpc001/auto_avsr): Swish ResNet-18, 12 Conformer layers, 768 wide.
AUTO_AVSR = dict(backend="conformer", dim=768, layers=12, heads=12, ffn_dim=3072,
                 activation="swish", audio_slot=False)


@dataclass
class VideoEncoderConfig:
    """Sizes of the video encoder; the defaults are AV-HuBERT Large (Llama-AVSR's video encoder)."""

    model_type: str = "avhubert"  # or "auto_avsr" (its defaults: AUTO_AVSR)
    backend: str = "transformer"  # AV-HuBERT; "conformer": auto_avsr
    dim: int = 1024  # transformer width (output feature size)
    layers: int = 24
    heads: int = 16
    ffn_dim: int = 4096
    norm_first: bool = True  # pre-norm layers (AV-HuBERT Large); False: post-norm (Base)
    conv_pos: int = 128  # convolutional position embedding: kernel (frames) and groups
    conv_pos_groups: int = 16
    conv_kernel: int = 31  # conformer: depthwise convolution kernel (frames)
    resnet_width: int = 64  # ResNet-18 stage widths w, 2w, 4w, 8w
    activation: str = "prelu"
    # AV-HuBERT concatenates [audio, video] features before its layer norm; a video-only
    # input fills the audio half with zeros, which the norm's statistics include.
    audio_slot: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> VideoEncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpeechkitError(f"{where}: unknown video encoder key {unknown[0]!r} (known: "
                                 f"{', '.join(sorted(known))}); remove or rename it")
        base = AUTO_AVSR if data.get("model_type") == "auto_avsr" else {}
        config = cls(**{**base, **data})
        config.check(where)
        return config

    def check(self, where: str) -> None:
        for name in ("dim", "layers", "heads", "ffn_dim", "conv_pos", "conv_pos_groups",
                     "conv_kernel", "resnet_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpeechkitError(f"{where}: video encoder {name} must be a whole number >= 1, "
                                     f"got {value!r}")
        if self.dim % self.heads or self.dim % self.conv_pos_groups:
            raise SpeechkitError(f"{where}: video encoder dim {self.dim} must be divisible by "
                                 f"heads ({self.heads}) and conv_pos_groups ({self.conv_pos_groups})")
        if self.backend not in BACKENDS:
            raise SpeechkitError(f"{where}: video encoder backend {self.backend!r}; use one of "
                                 f"{', '.join(BACKENDS)}")
        if self.backend == "conformer" and self.audio_slot:
            raise SpeechkitError(f"{where}: audio_slot is AV-HuBERT's (transformer back-end); "
                                 "set it to false for a conformer")
        if self.activation not in ACTIVATIONS:
            raise SpeechkitError(f"{where}: video encoder activation {self.activation!r}; use one "
                                 f"of {', '.join(ACTIVATIONS)}")


class VisualSpeechNet(nn.Module):
    """Crops [B, T, 88, 88] + valid-frame mask [B, T] -> features [B, T, dim]."""

    def __init__(self, c: VideoEncoderConfig) -> None:
        super().__init__()
        self.frontend = VisualFrontEnd(c.resnet_width, c.activation)
        self.proj = nn.Linear(self.frontend.out_dim, c.dim)
        width = 2 * c.dim if c.audio_slot else c.dim
        # auto_avsr feeds the projection straight into its Conformer; AV-HuBERT normalizes first.
        self.layer_norm = nn.LayerNorm(width) if c.backend == "transformer" else None
        self.post_extract_proj = nn.Linear(width, c.dim) if c.audio_slot else None
        if c.backend == "conformer":
            self.encoder: nn.Module = ConformerBackEnd(c.dim, c.layers, c.heads, c.ffn_dim,
                                                       c.conv_kernel)
        else:
            self.encoder = TransformerBackEnd(c.dim, c.layers, c.heads, c.ffn_dim, c.norm_first,
                                              c.conv_pos, c.conv_pos_groups)

    def forward(self, crops: torch.Tensor, keep: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        x = self.proj(self.frame_features(crops, valid))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(self.layer_norm(torch.cat([torch.zeros_like(x), x], -1)))
        elif self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.encoder(x, keep)


    def frame_features(self, crops: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The front-end over [B, T, H, W] crops, FRONTEND_FRAMES frames at a time (each chunk
        with the neighbours its 3-D conv reads, so the result equals one pass over all T).
        uint8 crops are normalized chunk by chunk, so a long clip is never held as floats;
        frames outside `valid` [B, T] (padding) are zeros after normalizing, as float input's."""
        t = crops.shape[1]
        parts = []
        for start in range(0, max(t, 1), FRONTEND_FRAMES):
            lo, hi = max(0, start - FRONTEND_CONTEXT), min(t, start + FRONTEND_FRAMES + FRONTEND_CONTEXT)
            chunk = crops[:, lo:hi]
            if chunk.dtype == torch.uint8:
                chunk = (chunk.float() / 255.0 - LIP_MEAN) / LIP_STD
                if valid is not None:
                    chunk = chunk * valid[:, lo:hi, None, None]
                chunk = chunk.to(self.proj.weight.dtype)
            out = self.frontend(chunk)
            parts.append(out[:, start - lo:start - lo + min(FRONTEND_FRAMES, t - start)])
        return torch.cat(parts, dim=1)


def video_config(spec: EncoderSpec, directory: Path | None) -> VideoEncoderConfig:
    """The encoder's sizes: its directory's config.json, or the spec's `config` for "random"."""
    if directory is None:
        data, where = dict(spec.config or {}), f"encoder {spec.modality!r} config"
    else:
        file = directory / CONFIG_FILE
        try:
            data, where = json.loads(file.read_text(encoding="utf-8")), str(file)
        except FileNotFoundError:
            raise SpeechkitError(f"{directory}: no {CONFIG_FILE}; a video encoder directory "
                                 "needs its sizes there (speechkit convert llama-avsr writes it)"
                                 ) from None
        except ValueError as e:
            raise SpeechkitError(f"{file}: invalid JSON ({e})") from None
    data.setdefault("model_type", spec.type)
    if data["model_type"] != spec.type:
        raise SpeechkitError(f"{where}: a {data['model_type']!r} encoder, but the spec says type "
                             f"{spec.type!r}; fix encoders[].type")
    return VideoEncoderConfig.from_dict(data, where)


def video_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Tensors from the directory's safetensors files, else its tensors-only *.bin files."""
    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("*.bin"))
    if not files:
        raise SpeechkitError(f"{directory}: no *.safetensors (or tensors-only *.bin) weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_weights(f))
    return state


class VideoEncoder(Encoder):
    """Lip crops [T, 88, 88] per item -> [T, dim] features at 25 Hz."""

    stream = "video"
    frame_rate = VIDEO_FPS

    def __init__(self, directory: Path | None, spec: EncoderSpec, device: str,
                 dtype: torch.dtype) -> None:
        if spec.layer_weights:
            raise SpeechkitError(f"encoder {spec.modality!r}: layer_weights is not supported for "
                                 "a video encoder; set it to false")
        config = video_config(spec, directory)
        super().__init__(config.layers, False)
        self.modality, self.dim, self.config = spec.modality, config.dim, config
        self.window_samples = max(1, int(spec.window_s * VIDEO_FPS))  # frames per window
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            self.model = VisualSpeechNet(config)
        if directory is not None:
            load_state_strict(self.model, video_weights(directory),
                              f"video encoder {spec.source}")
        self.model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.device_, self.dtype_ = device, dtype

    def encode_windows(self, windows: list[np.ndarray]) -> list[torch.Tensor]:
        shapes = {tuple(w.shape[1:]) for w in windows}
        if any(w.ndim != 3 for w in windows) or len(shapes) != 1:
            raise SpeechkitError(f"video encoder {self.modality!r}: lip crops must be [T, H, W] "
                                 f"frames of one size (88x88), got {sorted(shapes)}")
        lengths = torch.tensor([len(w) for w in windows])
        longest = max(1, int(lengths.max()))  # an empty window still runs one zero frame
        # uint8 crops (lip_stream's) stay uint8 until the front-end normalizes each chunk;
        # float crops are taken as already normalized. Padding: the value of a normalized 0.
        raw = all(w.dtype == np.uint8 for w in windows)
        x = torch.zeros(len(windows), longest, *shapes.pop(), dtype=torch.uint8 if raw else torch.float32)
        for i, w in enumerate(windows):
            x[i, :len(w)] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.uint8 if raw else np.float32))
        valid = torch.arange(longest)[None, :] < lengths[:, None]  # real frames; padding is 0
        keep = torch.arange(longest)[None, :] < lengths[:, None]
        keep[:, 0] |= lengths == 0  # attention needs one key; the frame is dropped below
        x = x.to(self.device_) if raw else x.to(self.device_, self.dtype_)
        feats = self.model(x, keep.to(self.device_), valid.to(self.device_))
        return [feats[i, :n] for i, n in enumerate(lengths.tolist())]

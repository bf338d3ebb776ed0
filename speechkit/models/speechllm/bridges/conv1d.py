"""SpeechVerse style downsampler: strided 1-D convolutions over the encoder frames."""

from __future__ import annotations

from torch import nn

from speechkit.models.speechllm.bridges.base import Bridge, Features, mask_padding
from speechkit.models.speechllm.checkpoint import BridgeSpec

SMOOTH_KERNEL = 3  # frames; the second conv mixes neighbouring tokens without changing the rate


class Conv1dBridge(Bridge):
    """Per modality: Conv1d(kernel = stride = rate) -> GELU -> Conv1d(kernel 3, same length)."""

    description = "strided 1-D convolution downsampler (SpeechVerse)"

    def __init__(self, spec: BridgeSpec) -> None:
        super().__init__(spec)
        self.down = nn.ModuleDict()
        self.smooth = nn.ModuleDict()
        for m, inp in spec.inputs.items():
            hidden = inp.hidden_dim or spec.out_dim
            self.down[m] = nn.Conv1d(inp.in_dim, hidden, kernel_size=inp.rate, stride=inp.rate)
            self.smooth[m] = nn.Conv1d(hidden, spec.out_dim, kernel_size=SMOOTH_KERNEL,
                                       padding=SMOOTH_KERNEL // 2)
        self.act = nn.GELU()

    def forward(self, features: Features) -> Features:
        out: Features = {}
        for m, (x, lengths) in features.items():
            k = self.spec.inputs[m].rate
            x = mask_padding(x, lengths)
            pad = (-x.shape[1]) % k
            x = nn.functional.pad(x, (0, 0, 0, pad)).to(self.down[m].weight.dtype)
            h = self.act(self.down[m](x.transpose(1, 2))).transpose(1, 2)
            new_len = (lengths + k - 1) // k
            h = mask_padding(h, new_len)  # padded tokens must not reach the smoothing kernel
            y = self.smooth[m](h.transpose(1, 2)).transpose(1, 2)
            out[m] = (y, new_len)
        return out

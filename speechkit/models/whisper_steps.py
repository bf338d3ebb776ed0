"""Whisper's decoder run a step at a time on the model's own layers, for the torch engine's
decoding loop (whisper_torch.py).

A whisper-base step is memory traffic more than arithmetic: it reads the decoder's weights
(88 MB float32), the vocabulary projection (106 MB) and each window's cross-attention keys and
values (37 MB). transformers' decoder call gave every row (beam, sampled candidate) its own
copy of its window's keys and values, and grew its cache by concatenation at every step.
Here self-attention keys and values go into tensors allocated once per decoding, and a
window's cross-attention keys and values are read once a step for all the rows decoding it,
as one block of queries. The arithmetic is transformers' own, layer for layer.

Rows may hold different numbers of tokens (a row takes back the draft tokens its model did
not confirm, see whisper_torch.py): a step then places each row's tokens at its own positions
and masks the positions a row does not hold.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# Rows up to which the vocabulary projection runs as (vocabulary x width) @ (width x rows):
# for 2-8 rows MKL's kernel for that shape took half the time of rows @ weights.T (whisper-base,
# 51,865 x 512 float32, one CPU core: 5 rows 11 ms against 22 ms), which is the same kernel
# as the latter's for one row and no faster from about 10 rows on. One row goes in twice: the
# matrix-vector kernel a single row gets reads the weights at half the speed and on one
# thread (11 ms on one core or two, against 5.3 and 2.9 ms for two rows).
FEW_ROWS = 8


def cross_states(model: Any, enc: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each decoder layer's cross-attention keys and values of each window, (windows, heads,
    frames, head width), from the windows' encoder output (windows, frames, width)."""
    out = []
    for layer in model.model.decoder.layers:
        attn = layer.encoder_attn
        shape = (enc.shape[0], -1, attn.num_heads, attn.head_dim)
        out.append((attn.k_proj(enc).view(shape).transpose(1, 2).contiguous(),
                    attn.v_proj(enc).view(shape).transpose(1, 2).contiguous()))
    return out


class StepDecoder:
    """The decoder state of a batch of rows, each decoding one window: `step` feeds each row
    its next tokens, `keep` picks, reorders or drops rows."""

    def __init__(self, model: Any, cross: list[tuple[torch.Tensor, torch.Tensor]],
                 windows: list[int], length: int, spare: int = 0):
        """`cross`: each layer's cross-attention (keys, values), (windows, heads, frames, head
        width) (see `cross_states`); `windows`: the window of each row;
        `length`: the most tokens a row will hold; `spare`: room after that for the padding
        of a step that feeds rows unequal numbers of tokens."""
        self.decoder = model.model.decoder
        self.proj_out = model.proj_out
        attn = self.decoder.layers[0].self_attn
        self.heads, self.width = attn.num_heads, attn.head_dim
        like = cross[0][0]
        shape = (len(windows), self.heads, length + spare, self.width)
        # Zeros, not garbage: a masked position is still multiplied by its weight 0 (NaN * 0).
        self.keys = [like.new_zeros(shape) for _ in self.decoder.layers]
        self.values = [like.new_zeros(shape) for _ in self.decoder.layers]
        self.length = 0  # tokens each row holds; the most any row holds when they differ
        self.held: list[int] | None = None  # tokens each row holds, when they differ
        self._all_cross = cross
        self._used: list[int] | None = None
        self._place(windows)

    def _place(self, windows: list[int]) -> None:
        """Lay the rows out as `group` query slots per window in use: row k's queries go to
        slot `_slots[k]` (None: slot k, every slot filled)."""
        used = sorted(set(windows))
        if used != self._used:  # a window no row decodes any more is no longer read
            self._used = used
            if used == list(range(self._all_cross[0][0].shape[0])):
                self.cross = self._all_cross
            else:
                index = torch.tensor(used, device=self._all_cross[0][0].device)
                self.cross = [(k[index], v[index]) for k, v in self._all_cross]
        counts = {w: windows.count(w) for w in used}
        self.group = max(counts.values())
        seen = dict.fromkeys(used, 0)
        slots = []
        for w in windows:
            slots.append(used.index(w) * self.group + seen[w])
            seen[w] += 1
        dense = slots == list(range(len(used) * self.group))
        self._slots = None if dense else torch.tensor(slots, device=self.cross[0][0].device)
        self.windows = windows

    def keep(self, rows: list[int]) -> None:
        """Go on with these rows (indices into the current ones), in this order: finished rows
        leave the batch; beams follow the hypotheses they extend."""
        index = torch.tensor(rows, device=self.keys[0].device)
        n, end = len(rows), self.length
        for cache in (self.keys, self.values):
            for i, t in enumerate(cache):
                if n > t.shape[0]:  # more rows than before: new tensors
                    cache[i] = t.index_select(0, index)
                    continue
                t[:n, :, :end] = t[index, :, :end]  # the right side is a copy: no overlap
                cache[i] = t[:n]
        if self.held is not None:
            self._hold([self.held[k] for k in rows])
        self._place([self.windows[k] for k in rows])

    def take_back(self, counts: list[int]) -> None:
        """Forget each row's last `counts[k]` tokens: the next step writes over them."""
        held = self.held or [self.length] * len(counts)
        self._hold([h - c for h, c in zip(held, counts, strict=True)])

    def _hold(self, held: list[int]) -> None:
        self.length = max(held)
        self.held = None if min(held) == self.length else held

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed each row its next tokens (rows, n): several only as a row's first tokens.
        Returns the final hidden states (rows, n, width): see `logits`."""
        start, n = self.length, ids.shape[1]
        if self.held is not None or (n > 1 and start):
            return self._ragged_step(ids)
        dec = self.decoder
        h = dec.embed_tokens(ids) + dec.embed_positions.weight[start:start + n]
        for i, layer in enumerate(dec.layers):
            h = h + self._self_attention(i, layer, layer.self_attn_layer_norm(h), start)
            h = h + self._cross_attention(i, layer, layer.encoder_attn_layer_norm(h))
            x = layer.final_layer_norm(h)
            h = h + layer.fc2(layer.activation_fn(layer.fc1(x)))
        self.length = start + n
        return dec.layer_norm(h)

    def _ragged_step(self, ids: torch.Tensor) -> torch.Tensor:
        """`step` where rows hold unequal numbers of tokens, or a row is fed several after its
        first: each row's tokens go to its own next positions, each attends to its own."""
        rows, n = ids.shape
        dec = self.decoder
        held = torch.tensor(self.held or [self.length] * rows, device=ids.device)
        at = held[:, None] + torch.arange(n, device=ids.device)  # (rows, n) cache positions
        if int(at.max()) >= self.keys[0].shape[2]:
            raise ValueError("more tokens than the decoder state has room for")
        positions = dec.embed_positions.weight
        # A padding token past the model's positions (its output is never read) takes the last.
        h = dec.embed_tokens(ids) + positions[at.clamp(max=positions.shape[0] - 1)]
        end = int(at.max()) + 1
        mask = (torch.arange(end, device=ids.device) <= at[:, :, None])[:, None]  # (rows, 1, n, end)
        for i, layer in enumerate(dec.layers):
            h = h + self._masked_self_attention(i, layer, layer.self_attn_layer_norm(h), at, mask)
            h = h + self._cross_attention(i, layer, layer.encoder_attn_layer_norm(h))
            x = layer.final_layer_norm(h)
            h = h + layer.fc2(layer.activation_fn(layer.fc1(x)))
        self._hold((held + n).tolist())
        return dec.layer_norm(h)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits (float32) from `step`'s hidden states."""
        proj = self.proj_out
        rows = hidden.reshape(-1, hidden.shape[-1])
        if (type(proj) is torch.nn.Linear and proj.bias is None and rows.device.type == "cpu"
                and proj.weight.dtype == torch.float32 and rows.shape[0] <= FEW_ROWS):
            pair = rows.shape[0] == 1
            if pair:
                rows = torch.cat([rows, rows])
            out = torch.mm(proj.weight, rows.t()).t().contiguous()  # see FEW_ROWS
            if pair:
                out = out[:1]
        else:
            out = proj(rows)
        return out.view(*hidden.shape[:-1], -1).float()

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, n, width) -> (rows, heads, n, head width)."""
        return x.view(x.shape[0], x.shape[1], self.heads, self.width).transpose(1, 2)

    def _self_attention(self, i: int, layer: Any, x: torch.Tensor, start: int) -> torch.Tensor:
        attn = layer.self_attn
        end = start + x.shape[1]
        q = self._split(attn.q_proj(x) * attn.scaling)  # scaled first, as transformers does
        self.keys[i][:, :, start:end] = self._split(attn.k_proj(x))
        self.values[i][:, :, start:end] = self._split(attn.v_proj(x))
        out = F.scaled_dot_product_attention(q, self.keys[i][:, :, :end], self.values[i][:, :, :end],
                                             is_causal=end > 1 and start == 0, scale=1.0)
        return attn.out_proj(out.transpose(1, 2).reshape(x.shape))

    def _masked_self_attention(self, i: int, layer: Any, x: torch.Tensor, at: torch.Tensor,
                               mask: torch.Tensor) -> torch.Tensor:
        attn = layer.self_attn
        rows, n, _ = x.shape
        q = self._split(attn.q_proj(x) * attn.scaling)
        index = torch.arange(rows, device=x.device)[:, None]
        self.keys[i][index, :, at] = attn.k_proj(x).view(rows, n, self.heads, self.width)
        self.values[i][index, :, at] = attn.v_proj(x).view(rows, n, self.heads, self.width)
        end = mask.shape[-1]
        out = F.scaled_dot_product_attention(q, self.keys[i][:, :, :end], self.values[i][:, :, :end],
                                             attn_mask=mask, scale=1.0)
        return attn.out_proj(out.transpose(1, 2).reshape(x.shape))

    def _cross_attention(self, i: int, layer: Any, x: torch.Tensor) -> torch.Tensor:
        """Each window's rows attend to its keys and values together: the queries of a
        window's `group` slots form one block (a slot no row fills has zero queries)."""
        attn = layer.encoder_attn
        keys, values = self.cross[i]
        rows, n, _ = x.shape
        q = (attn.q_proj(x) * attn.scaling).view(rows, n, self.heads, self.width)
        if self._slots is not None:
            slots = q.new_zeros(keys.shape[0] * self.group, n, self.heads, self.width)
            slots[self._slots] = q
            q = slots
        q = q.reshape(keys.shape[0], self.group * n, self.heads, self.width).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, keys, values, scale=1.0).transpose(1, 2)
        out = out.reshape(-1, n, self.heads * self.width)
        if self._slots is not None:
            out = out[self._slots]
        return attn.out_proj(out)

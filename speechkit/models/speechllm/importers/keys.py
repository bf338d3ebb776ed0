"""Bookkeeping for checkpoint importers: every source key is mapped, dropped with a reason, or
reported as unknown, and the converted tensors must fill the target module exactly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from speechkit.errors import SpeechkitError


@dataclass
class KeyLedger:
    """The source state dict and what became of each of its keys."""

    state: dict[str, torch.Tensor]
    source: str  # the checkpoint file, for messages
    used: set[str] = field(default_factory=set)
    dropped: dict[str, str] = field(default_factory=dict)  # key -> why inference needs none
    # key prefix -> the training option that saves such keys, said when they are refused
    options: dict[str, str] = field(default_factory=dict)

    def has(self, key: str) -> bool:
        return key in self.state

    def take(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise SpeechkitError(f"{self.source}: no {key}; the checkpoint is incomplete or of "
                                 "another model family")
        self.used.add(key)
        return self.state[key]

    def drop(self, key: str, why: str) -> None:
        self.dropped[key] = why

    def under(self, prefix: str) -> list[str]:
        return sorted(k for k in self.state if k.startswith(prefix))

    def leftover(self) -> list[str]:
        return sorted(set(self.state) - self.used - set(self.dropped))

    def dropped_summary(self) -> dict[str, int]:
        """Reason -> how many keys were dropped for it."""
        out: dict[str, int] = {}
        for why in self.dropped.values():
            out[why] = out.get(why, 0) + 1
        return out


def check_fits(expected: Mapping[str, torch.Tensor], tensors: dict[str, torch.Tensor], what: str,
               source: str) -> None:
    """The converted tensors fill the target state dict exactly (names and shapes); else one
    error naming what is missing, unmapped or misshapen."""
    want = {k: tuple(v.shape) for k, v in expected.items()}
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {want[k]}" for k in sorted(want)
             if k in tensors and tuple(tensors[k].shape) != want[k]]
    if missing or extra or wrong:
        raise SpeechkitError(f"{source}: the {what} weights do not map completely: missing "
                             f"{_few(missing)}, unmapped {_few(extra)}, shapes {_few(wrong)}; "
                             "speechkit refuses a partial conversion")


def key_families(keys: list[str], depth: int = 4, n: int = 6) -> list[str]:
    """The distinct leading parts of keys, layer numbers as `*` (`beats.encoder.layers.*`)."""
    families: list[str] = []
    for k in keys:
        family = ".".join("*" if p.isdigit() else p for p in k.split(".")[:depth])
        if family not in families:
            families.append(family)
    return families[:n]


def _few(keys: list[str], n: int = 5) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def refuse_leftover(ledger: KeyLedger) -> None:
    """Fail, naming them, when any source key was neither mapped nor dropped."""
    left = ledger.leftover()
    if left:
        hint = next((why for prefix, why in ledger.options.items()
                     if any(k.startswith(prefix) for k in left)), "")
        raise SpeechkitError(f"{ledger.source}: {len(left)} keys have no mapping (key families "
                             f"{', '.join(key_families(left))}; {_few(left)}); speechkit refuses a "
                             f"partial conversion{hint}")

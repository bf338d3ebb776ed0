"""The command line every official side of `benchmarks/parity.py` takes (plain argparse:
imported by the official code's Python, beside no speechkit). `parity.py` calls
`parity_<family>.py build ...` and then `run ...` with these options; a family adds its own."""

from __future__ import annotations

import argparse
from pathlib import Path


def official_parser(description: str, checkout: str, prompt: str | None,
                    max_new_tokens: int) -> argparse.ArgumentParser:
    """`build` / `run`, the checkout (`checkout` describes it), the output folder, the built
    parts, the clips to decode and those whose prefix alone is written, the prompt (`None`:
    the family builds its own) and the answer's token budget."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("step", choices=["build", "run"])
    ap.add_argument("--official", type=Path, required=True, help=checkout)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--parts", type=Path, help="run: the directory `build` wrote")
    ap.add_argument("--clips", type=Path, nargs="*", default=[])
    ap.add_argument("--prefix-clips", type=Path, nargs="*", default=[])
    if prompt is None:
        ap.add_argument("--prompt", help="unused: the official prompt is built in")
    else:
        ap.add_argument("--prompt", default=prompt)
    ap.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    return ap

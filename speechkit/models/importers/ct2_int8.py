"""A CTranslate2 model.bin quantized to int8 on disk, exactly as CTranslate2 quantizes at load.

With `compute_type="int8"` CTranslate2 reads a float16 model.bin and quantizes its matrices
while loading: whisper-base's 139 MB are read whole and converted through temporaries, a
peak of about 175 MB over the loaded model (300 MB peak RSS to end at 125 MB). Quantized
once on disk, the same model loads with no conversion: 71 MB read, a 117 MB peak.

The quantization is the one CTranslate2 applies at load, so the loaded model is the same:
every 2-D `.../weight` variable (linear layers and the token embedding, which the output
projection aliases) gets one scale per row, 127 / max |row|, and its values are rounded half
to even after scaling; a `<name>_scale` float32 variable holds the scales. Convolution
kernels stay as they are (CTranslate2 does not quantize them at load; its own converter
does, which changes Whisper's encoder output). `tests/test_ct2_int8.py` checks encoder
outputs and decoded ids and scores bit for bit against the float16 file.

The file is written variable by variable from a memory map of the source: the conversion
holds one matrix at a time.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from speechkit.models.importers.ct2 import CT2_BINARY_VERSION, CT2_DTYPES, Ct2Model, parse_ct2_model

INT8_MAX = 127.0
DTYPE_IDS = {np.dtype(t): i for i, t in CT2_DTYPES.items() if i in (0, 1, 2, 3, 4)}
SCALE_SUFFIX = "_scale"
ROWS_PER_BLOCK = 4096  # rows quantized at once


def quantizable(name: str, value: np.ndarray) -> bool:
    """Whether CTranslate2 quantizes this variable at load (a floating matrix named weight)."""
    return value.ndim == 2 and name.endswith("weight") and value.dtype.kind == "f"


def quantize_rows(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows and their float32 scales (127 / max |row|; an all-zero row gets scale 1)."""
    w = value.astype(np.float32)
    amax = np.abs(w).max(axis=1)
    amax[amax == 0] = INT8_MAX
    scale = (INT8_MAX / amax).astype(np.float32)
    return np.rint(w * scale[:, None]).astype(np.int8), scale


def _quantized(value: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`quantize_rows` a block of rows at a time (the token embedding is 106 MB as float32)."""
    blocks = [quantize_rows(value[i:i + ROWS_PER_BLOCK])
              for i in range(0, len(value), ROWS_PER_BLOCK)]
    return [q for q, _ in blocks], [s for _, s in blocks]


def _stored(model: Ct2Model) -> Iterator[tuple[str, tuple[int, ...], np.dtype, list[np.ndarray]]]:
    """(name, shape, dtype, blocks) of each variable to write, in file order, each quantized
    matrix followed by its scales."""
    for name, value in model.variables.items():
        if quantizable(name, value):
            q, scales = _quantized(value)
            yield name, value.shape, np.dtype(np.int8), q
            yield name + SCALE_SUFFIX, (len(value),), np.dtype(np.float32), scales
        else:
            yield name, value.shape, value.dtype, [value]


def write_int8_model(source: str | Path, out: str | Path) -> None:
    """Write `out` (a model.bin) with `source`'s variables quantized as CTranslate2 does at load."""
    with open(source, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            _write_quantized(buf, str(source), Path(out))
        finally:
            try:
                buf.close()
            except BufferError:  # an error's traceback still holds views of it: freed with them
                pass


def _write_quantized(buf: mmap.mmap, source: str, out: Path) -> None:
    model = parse_ct2_model(memoryview(buf), source)
    if any(n.endswith(SCALE_SUFFIX) for n in model.variables):
        raise ValueError(f"{source} is quantized already")
    count = sum(2 if quantizable(n, v) else 1 for n, v in model.variables.items())
    with open(out, "wb") as dst:
        _write_header(dst, model, count)
        for name, shape, dtype, blocks in _stored(model):
            _write_variable(dst, name, shape, dtype, blocks)
        dst.write(struct.pack("<I", len(model.aliases)))
        for alias, target in model.aliases.items():
            _write_string(dst, alias)
            _write_string(dst, target)


def _write_string(f: BinaryIO, text: str) -> None:
    data = text.encode("utf-8") + b"\0"
    f.write(struct.pack("<H", len(data)))
    f.write(data)


def _write_header(f: BinaryIO, model: Ct2Model, count: int) -> None:
    f.write(struct.pack("<I", CT2_BINARY_VERSION))
    _write_string(f, model.spec)
    f.write(struct.pack("<II", model.revision, count))


def _write_variable(f: BinaryIO, name: str, shape: tuple[int, ...], dtype: np.dtype,
                    blocks: list[np.ndarray]) -> None:
    _write_string(f, name)
    f.write(struct.pack("<B", len(shape)))
    f.write(struct.pack(f"<{len(shape)}I", *shape))
    f.write(struct.pack("<BI", DTYPE_IDS[dtype], sum(b.nbytes for b in blocks)))
    for block in blocks:
        f.write(np.ascontiguousarray(block).tobytes())

"""The process heap keeps freed memory for reuse: a large block freed and asked for again is
not faulted in again."""

import os
import platform
import subprocess
import sys

import pytest

from speechkit.heap import HEAP_ENV

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

PROBE = """
import ctypes, resource
from speechkit.heap import keep_freed_memory
set_ = keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size = 72 * 2**20  # one layer's attention scores, Whisper base
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):  # the first round warms up
    before = faults()
    for _ in range(5):
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
    after = faults()
print(set_, after - before)
"""


def _probe(env: dict[str, str]) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0] == "True", int(out[1])


def test_freed_large_blocks_are_reused_without_faulting_them_in_again():
    kept, faults = _probe({})
    assert kept and faults < 1000  # 5 x 72 MB would be about 92,000 page faults
    system, faults_system = _probe({HEAP_ENV: "system"})
    assert not system and faults_system > 50_000  # glibc's default: unmapped on free

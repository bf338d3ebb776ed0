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
import ctypes, resource, sys
from speechkit.heap import keep_freed_memory, loading_weights
set_ = keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size = 72 * 2**20  # one layer's attention scores, Whisper base
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def rounds():
    for _ in range(2):  # the first round warms up
        before = faults()
        for _ in range(5):
            block = libc.malloc(size)
            ctypes.memset(block, 1, size)
            libc.free(block)
        after = faults()
    return after - before
if sys.argv[1:] == ["loading"]:
    with loading_weights():
        loading = rounds()
    print(set_, loading, rounds())
else:
    print(set_, rounds())
"""


def _probe(env: dict[str, str], *args: str) -> tuple[bool, int, ...]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                         check=True, env={**os.environ, **env}).stdout.split()
    return out[0] == "True", *map(int, out[1:])


def test_freed_large_blocks_are_reused_without_faulting_them_in_again():
    kept, faults = _probe({})
    assert kept and faults < 1000  # 5 x 72 MB would be about 92,000 page faults
    system, faults_system = _probe({HEAP_ENV: "system"})
    assert not system and faults_system > 50_000  # glibc's default: unmapped on free


def test_blocks_freed_while_weights_load_go_back_to_the_system_and_the_policy_returns():
    kept, loading, after = _probe({}, "loading")
    assert kept and loading > 50_000  # mapped and unmapped: load temporaries are not kept
    assert after < 1000  # reused again once the weights are in

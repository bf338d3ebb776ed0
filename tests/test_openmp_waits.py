"""The command line makes OpenMP threads that run out of work sleep instead of spin (they took
the cores of busy machines from the work itself), unless the user chose a wait policy."""

import os
import subprocess
import sys

PROBE = """
import os, sys
from speechkit.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print("POLICY", os.environ.get("OMP_WAIT_POLICY"))
"""


def _policy(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env=env).stdout
    return out.rsplit("POLICY", 1)[1].strip()


def test_openmp_threads_wait_passively_unless_the_user_set_a_policy():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _policy(env) == "PASSIVE"
    assert _policy({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"

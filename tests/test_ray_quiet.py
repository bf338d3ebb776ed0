"""A Ray run's stderr holds speechkit's lines only: nothing from Ray's core or its workers."""

import re
import subprocess
import sys

import pytest

pytest.importorskip("ray")


@pytest.mark.slow
def test_a_ray_run_prints_no_ray_log_line(testdata, tmp_path):
    clip = testdata / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"
    run = subprocess.run([sys.executable, "-m", "speechkit", "transcribe", str(clip), "--runner", "ray",
                          "--out", str(tmp_path / "r.jsonl"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    # Ray's C++ lines look like "[2026-12-06 23:47:55,468 I 10683 10683] logging.cc:303: ..."
    leaked = [ln for ln in run.stderr.splitlines() if re.match(r"^\[\d{4}-\d\d-\d\d |^\(\w+ pid=", ln)]
    assert not leaked, leaked
    assert "files ok" in run.stderr

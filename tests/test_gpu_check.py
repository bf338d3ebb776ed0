"""scripts/gpu-check --dry-run: every step of the GPU check runs on the CPU, as a user runs it."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from gpu_steps import COLUMNS, sizes  # noqa: E402

SCRIPT = ROOT / "scripts" / "gpu-check"
PROBE = "gpucheck_probe"  # the carried wheel the install step must install, offline


def make_wheel(folder: Path) -> Path:
    """A minimal but complete pure-Python wheel, as `pip download` leaves them in wheels/."""
    files = {f"{PROBE}/__init__.py": b"VALUE = 1\n",
             f"{PROBE}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {PROBE}\n"
                                                f"Version: 0.1\n".encode(),
             f"{PROBE}-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
                                             b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()]
    files[f"{PROBE}-0.1.dist-info/RECORD"] = ("\n".join([*record, f"{PROBE}-0.1.dist-info/RECORD,,"])
                                              + "\n").encode()
    folder.mkdir(parents=True)
    wheel = folder / f"{PROBE}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def table_rows(text: str) -> list[dict[str, str]]:
    lines = [x for x in text.splitlines() if x.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    assert header == list(COLUMNS)
    return [dict(zip(header, (c.strip() for c in x.strip().strip("|").split(" | ")), strict=True))
            for x in lines[1:]]


def run_check(tmp: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    out_dir, device_out = tmp / "results", tmp / "OUT"
    device_out.mkdir()
    env = dict(os.environ, OUT=str(device_out))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out-dir", str(out_dir),
                           "--carried", str(tmp / "carried"), *args],
                          capture_output=True, text=True, env=env, cwd=tmp, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out_dir, device_out


@pytest.mark.slow
def test_dry_run_runs_every_step_and_writes_the_table(tmp_path: Path, testdata: Path) -> None:
    make_wheel(tmp_path / "carried" / "wheels")
    proc, out_dir, device_out = run_check(tmp_path)
    (written,) = out_dir.glob("gpu-*-dry-run.md")
    text = written.read_text()
    assert (device_out / written.name).read_text() == text  # copied to $OUT for the way back
    assert (device_out / "gpu-check.log").is_file()
    assert "| llm " in proc.stdout  # and printed
    rows = table_rows(text)
    by_step: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_step.setdefault(r["step"], []).append(r)

    sz = sizes(dry_run=True)
    install = by_step["install"][0]
    assert install["status"] == "ok" and PROBE in install["model"]
    assert "torch" in by_step["machine"][0]["model"] and "bitsandbytes" in by_step["machine"][0]["model"]
    for label in sz.llm_shapes:
        assert by_step[f"checkpoint {label}"][0]["status"] == "ok"
        for quant in ("4bit", sz.float_quant):
            got = by_step[f"llm {label} {quant}"]
            assert [int(r["batch"]) for r in got] == list(sz.batches)
            for r in got:
                assert r["status"] == "ok", r
                assert r["precision"] == quant and r["model"] == label
                assert r["batched == one-at-a-time"] == "yes"
                assert float(r["tokens/s"].replace(",", "")) > 0
                assert float(r["RTFx"].replace(",", "")) > 0
                assert float(r["peak MB"].replace(",", "")) > 0
    base = by_step["whisper-torch base"][0]
    assert base["status"] == "ok" and base["model"] == "whisper-base"  # the real weights
    assert float(base["WER %"]) < 20  # LibriVox clips that Whisper base gets (nearly) right
    large = by_step["whisper-torch large-v3"][0]
    assert large["status"] == "ok" and large["WER %"] == "n/a (random)"
    assert float(large["RTFx"]) > 0
    loops = by_step["whisper-torch loops"]
    assert [r["status"] for r in loops] == ["ok", "ok"]  # the same tokens with drafts and without
    on, off = (int(r["model"].split(": ")[1].split()[0]) for r in loops)
    assert on < off  # the loop took fewer decoder passes with drafts
    for size in ("base", "large-v3"):  # faster-whisper is the `bench` extra, not the test one
        fw = by_step[f"faster-whisper {size}"][0]
        assert fw["status"] == "ok" or fw["status"].startswith("not installed"), fw
        if fw["status"] == "ok":
            assert float(fw["RTFx"]) > 0


def test_steps_past_the_budget_are_recorded_not_run(tmp_path: Path) -> None:
    _, out_dir, _ = run_check(tmp_path, "--budget", "0")
    rows = table_rows(next(out_dir.glob("gpu-*-dry-run.md")).read_text())
    skipped = [r for r in rows if r["step"] not in ("install", "machine")]
    assert {r["step"].split()[0] for r in skipped} == {"checkpoint", "llm", "whisper-torch",
                                                       "faster-whisper"}
    assert all(r["status"].startswith("skipped") for r in skipped)

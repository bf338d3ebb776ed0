"""`--runner ray --address`: an address nothing listens at fails within seconds, a malformed
one is a one-line error naming the forms Ray takes (Ray itself retried for many minutes)."""

from __future__ import annotations

import socket
import time

import pytest

from speechkit.errors import SpeechkitError
from speechkit.scale.options import ScaleOptions, cluster_endpoint
from tests.test_cli import librivox_clips, speechkit

CASE_TIMEOUT = 60  # s


def closed_port() -> int:
    """A local port nothing listens at (bound for a moment, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_nothing_listens_at_fails_fast(testdata, tmp_path, scheme):
    address = f"{scheme}127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    run = speechkit("transcribe", librivox_clips(testdata)[0], "--runner", "ray", "--address", address,
                    "--model", "whisper-tiny.en", "--out", tmp_path / "out.jsonl", timeout=CASE_TIMEOUT)
    assert time.monotonic() - t0 < CASE_TIMEOUT
    lines = [x for x in run.stderr.splitlines() if x.strip() and "gcs_client" not in x]
    assert run.returncode != 0
    assert len(lines) == 1 and f"no Ray cluster at --address {address}" in lines[0], run.stderr
    assert "unexpected" not in run.stderr


@pytest.mark.parametrize("address", ["not an address", "127.0.0.1", "host:99999", "host:0",
                                     "ray://", "ray://:10001", "http://h:1/x", ":6379"])
def test_a_malformed_address_is_one_line_naming_the_forms(testdata, tmp_path, address):
    with pytest.raises(SpeechkitError, match="is not a Ray address; give HOST:PORT"):
        ScaleOptions(runner="ray", address=address)
    run = speechkit("transcribe", librivox_clips(testdata)[0], "--runner", "ray", "--address", address,
                    "--out", tmp_path / "out.jsonl", timeout=CASE_TIMEOUT)
    assert run.returncode != 0 and "unexpected" not in run.stderr
    assert [x for x in run.stderr.splitlines() if x.strip()] == [run.stderr.strip()]
    assert "is not a Ray address" in run.stderr


@pytest.mark.parametrize(("address", "endpoint"), [
    ("auto", None), ("local", None), ("10.0.0.5:6379", ("10.0.0.5", 6379)),
    ("ray://head:10001", ("head", 10001)), ("[::1]:6379", ("::1", 6379)),
])
def test_the_address_forms_ray_takes_are_accepted(address, endpoint):
    assert cluster_endpoint(address) == endpoint

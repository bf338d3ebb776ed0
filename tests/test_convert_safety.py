"""`speechkit convert` never deletes or replaces its inputs, writes through a staging folder,
and the staging folders of killed conversions are removed by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.llama_avsr_parts import llama_avsr_state, tiny_llama3


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert-safety")
    llm = tiny_llama3(root / "llama")
    state = {k: v for k, v in llama_avsr_state(llm).items() if not k.startswith("audio_")}
    return {"llm": llm, "state": state}


@dataclass
class Run:
    exit_code: int
    output: str


@pytest.fixture()
def convert(capsys):
    """`speechkit convert llama-avsr ARGS` through the console entry point, in this process."""
    from speechkit.cli import main

    def run(*args: str | Path) -> Run:
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["convert", "llama-avsr", *map(str, args)])
        said = capsys.readouterr()
        return Run(int(done.value.code or 0), said.out + said.err)

    return run


def one_line(output: str) -> str:
    lines = [x for x in output.splitlines() if x.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output and "unexpected" not in output, output
    return lines[0]


def test_force_refuses_an_out_that_holds_the_checkpoint(parts, tmp_path, convert):
    holder = tmp_path / "holder"
    holder.mkdir()
    torch.save(parts["state"], holder / "model.pth")
    before = (holder / "model.pth").read_bytes()
    res = convert("--ckpt", holder / "model.pth", "--llm", parts["llm"], "--out", holder, "--force")
    assert res.exit_code != 0
    assert "is or holds the input" in one_line(res.output)
    assert (holder / "model.pth").read_bytes() == before
    assert sorted(p.name for p in holder.iterdir()) == ["model.pth"]


def test_force_refuses_the_llm_folder_as_out(parts, tmp_path, convert):
    torch.save(parts["state"], tmp_path / "model.pth")
    llm_files = {p.name: p.read_bytes() for p in parts["llm"].iterdir()}
    res = convert("--ckpt", tmp_path / "model.pth", "--llm", parts["llm"], "--out", parts["llm"],
                  "--force")
    assert res.exit_code != 0 and "is or holds the input" in one_line(res.output)
    assert {p.name: p.read_bytes() for p in parts["llm"].iterdir()} == llm_files


def test_force_refuses_an_out_reached_through_a_link(parts, tmp_path, convert):
    holder = tmp_path / "holder"
    holder.mkdir()
    torch.save(parts["state"], holder / "model.pth")
    (tmp_path / "alias").symlink_to(holder)
    res = convert("--ckpt", holder / "model.pth", "--llm", parts["llm"], "--out", tmp_path / "alias",
                  "--force")
    assert res.exit_code != 0 and "is or holds the input" in one_line(res.output)
    assert (holder / "model.pth").is_file()


def test_an_out_that_is_a_file_is_named(parts, tmp_path, convert):
    torch.save(parts["state"], tmp_path / "model.pth")
    (tmp_path / "taken").write_text("notes\n")
    res = convert("--ckpt", tmp_path / "model.pth", "--llm", parts["llm"], "--out", tmp_path / "taken",
                  "--force")
    assert res.exit_code != 0 and "is a file" in one_line(res.output)
    assert (tmp_path / "taken").read_text() == "notes\n"


def test_force_replaces_an_earlier_checkpoint_and_leaves_no_staging(parts, tmp_path, convert):
    torch.save(parts["state"], tmp_path / "model.pth")
    out = tmp_path / "ckpts" / "avsr"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("an earlier conversion\n")
    res = convert("--ckpt", tmp_path / "model.pth", "--llm", parts["llm"], "--out", out, "--force")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "speechkit.json").read_text())["encoders"][0]["modality"] == "video"
    assert not (out / "old.txt").exists()
    assert [p.name for p in out.parent.iterdir()] == ["avsr"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_converted_checkpoint_follows_the_umask(parts, tmp_path, convert, umask):
    """The folder and its files get the modes any other program would give them, not the
    private 0700 of a temporary folder."""
    torch.save(parts["state"], tmp_path / "model.pth")
    out = tmp_path / "avsr"
    old = os.umask(umask)
    try:
        res = convert("--ckpt", tmp_path / "model.pth", "--llm", parts["llm"], "--out", out)
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    for f in out.rglob("*"):
        want = (0o777 if f.is_dir() else 0o666) & ~umask
        assert f.stat().st_mode & 0o777 == want, f


def test_a_killed_conversion_leaves_staging_that_the_next_run_removes(parts, tmp_path, convert):
    torch.save(parts["state"], tmp_path / "model.pth")
    out = tmp_path / "ckpts" / "avsr"
    args = [sys.executable, "-m", "speechkit", "convert", "llama-avsr", "--ckpt",
            str(tmp_path / "model.pth"), "--llm", str(parts["llm"]), "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
    deadline = time.monotonic() + 60
    staging: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None and not staging:
        staging = list(out.parent.glob(".avsr.staging-*")) if out.parent.is_dir() else []
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if not staging:
        pytest.fail("the conversion finished before its staging folder was seen")
    assert staging[0].exists() and not out.exists()  # what a killed run leaves behind
    res = convert("--ckpt", tmp_path / "model.pth", "--llm", parts["llm"], "--out", out)
    assert res.exit_code == 0, res.output
    assert [p.name for p in out.parent.iterdir()] == ["avsr"]
    assert (out / "speechkit.json").is_file()


def test_a_staging_folder_of_a_live_process_is_kept(tmp_path):
    from speechkit.staging import clean_stale

    out = tmp_path / "avsr"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = tmp_path / f".avsr.staging-{live.pid}-abc"
        mine.mkdir()
        live_done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                   capture_output=True, text=True, check=True)
        dead = tmp_path / f".avsr.staging-{int(live_done.stdout)}-def"
        dead.mkdir()
        assert clean_stale(out) == [dead]
        assert mine.is_dir() and not dead.exists()
    finally:
        live.kill()
        live.wait()


def test_a_target_renamed_aside_by_a_killed_run_comes_back(tmp_path):
    from speechkit.staging import clean_stale

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    aside = tmp_path / f".avsr.replaced-{int(gone.stdout)}-xyz"
    (aside / "avsr").mkdir(parents=True)
    (aside / "avsr" / "speechkit.json").write_text("{}\n")
    clean_stale(tmp_path / "avsr")
    assert (tmp_path / "avsr" / "speechkit.json").read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["avsr"]


# --- what --ckpt is, and weights that are not numbers -------------------------------------------


@pytest.mark.parametrize(("make", "said"), [
    (lambda p: p.mkdir(), "is a folder; pass the checkpoint file inside it"),
    (lambda p: os.mkfifo(p), "is not a regular file (a pipe, device or socket)"),
    (lambda p: p.symlink_to("/dev/zero"), "is not a regular file (a pipe, device or socket)"),
    (lambda p: p.touch(), "is empty (0 bytes)"),
    (lambda p: p.write_text("step,loss\n1,0.5\n"), "text, not a torch weights file"),
    (lambda p: p.write_bytes(b"\x00\x01garbage" * 10), "no torch file, not a torch weights file"),
])
def test_a_ckpt_that_is_no_checkpoint_file_is_named(parts, tmp_path, convert, make, said):
    ckpt = tmp_path / "model.pth"
    make(ckpt)
    res = convert("--ckpt", ckpt, "--llm", parts["llm"], "--out", tmp_path / "out")
    assert res.exit_code != 0
    line = one_line(res.output)
    assert str(ckpt) in line and said in line, line
    assert "pickled Python objects" not in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_weights_holding_nan_or_inf_are_refused_at_conversion(parts, tmp_path, convert, value):
    state = dict(parts["state"])
    key = "video_proj.2.weight"
    state[key] = state[key].clone()
    state[key][3, 5] = value
    torch.save(state, tmp_path / "model.pth")
    res = convert("--ckpt", tmp_path / "model.pth", "--llm", parts["llm"], "--out", tmp_path / "out")
    assert res.exit_code != 0
    line = one_line(res.output)
    assert f"tensor {key} holds NaN or infinite values (1 of" in line, line
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def converted(parts, tmp_path_factory):
    from speechkit.models.speechllm.importers.llama_avsr import convert_llama_avsr

    root = tmp_path_factory.mktemp("converted")
    torch.save(parts["state"], root / "model.pth")
    convert_llama_avsr(root / "model.pth", root / "vsr", llm=str(parts["llm"]))
    return root / "vsr"


@pytest.mark.parametrize("where", ["bridge.safetensors", "llm/model.safetensors"])
def test_weights_holding_nan_are_refused_at_load(converted, tmp_path, where):
    import shutil

    from safetensors.torch import load_file, save_file

    from speechkit.errors import SpeechkitError
    from speechkit.models.speechllm import load_speechllm

    ckpt = tmp_path / "vsr"
    shutil.copytree(converted, ckpt)
    load_speechllm(str(ckpt))  # loads as converted
    tensors = load_file(str(ckpt / where))
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.ndim == 2)
    tensors[name][0, 0] = float("nan")
    save_file(tensors, str(ckpt / where))
    with pytest.raises(SpeechkitError, match=r"holds NaN or infinite values \(1 of"):
        load_speechllm(str(ckpt))


def test_convert_edge_cases_are_one_line_naming_problem_and_fix(parts, tmp_path, convert):
    torch.save(parts["state"], tmp_path / "model.pth")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    ckpt, llm = tmp_path / "model.pth", parts["llm"]
    cases = [
        (("--llm", llm, "--out", tmp_path / "afile" / "sub"), "is a file, so no folder can be made"),
        (("--llm", tmp_path / "empty", "--out", tmp_path / "o"), "transformers cannot read it"),
        (("--llm", tmp_path / "afile", "--out", tmp_path / "o"), "a file; pass the model's directory"),
        (("--llm", llm, "--out", ""), "--out is empty or the current folder"),
        (("--llm", llm, "--out", "/proc/speechkit-out"), "cannot write a folder beside it"),
    ]
    for args, said in cases:
        res = convert("--ckpt", ckpt, *args)
        assert res.exit_code != 0, args
        assert said in one_line(res.output), (args, res.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty", "model.pth"]


def test_a_tensor_of_the_wrong_shape_is_one_line(parts, tmp_path, convert):
    state = dict(parts["state"])
    state["llm.model.embed_tokens.weight"] = torch.tensor(1.0)  # a scalar where a matrix belongs
    torch.save(state, tmp_path / "model.pth")
    res = convert("--ckpt", tmp_path / "model.pth", "--llm", parts["llm"], "--out", tmp_path / "out")
    assert res.exit_code != 0
    assert "not shaped like a released Llama-AVSR checkpoint" in one_line(res.output)
    assert not (tmp_path / "out").exists()

"""Hostile inputs, run as a user runs them: nothing lost, nothing hangs, nothing deleted.

Each case builds its own inputs in a temporary folder, runs the real command line
(`python -m speechkit ...`) in a subprocess under a timeout, and is classified:

    hang        the command ran past --timeout (it is killed with its process group)
    unclear     stderr holds "unexpected" or a Python "Traceback", or the exit code is not
                0, 1, 2 or 130
    lost/wrong  an input was deleted or changed; result lines are missing, repeated or mixed;
                an item is marked ok that must not be
    clean       none of these

    python benchmarks/hostile.py                    # every class
    python benchmarks/hostile.py --only merge --timeout 60

Classes: lips, convert, merge, ray, manifests, concurrency, builtins. Inputs: Debian's
pocketsphinx LibriVox recordings (scripts/fetch-testdata.sh), a talking-face clip made from
scikit-image's astronaut photograph, and tiny random Llama-AVSR checkpoints built as the tests
build them (tests/llama_avsr_parts.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLEAN_EXIT = {0, 1, 2, 130}  # ok, some items failed, usage error, interrupted
CLASSES = ["lips", "convert", "merge", "ray", "manifests", "concurrency", "builtins"]
TITLES = {"lips": "lips + vsr/avsr", "convert": "convert / checkpoint", "merge": "merge / --shard",
          "ray": "--runner ray", "manifests": "manifests / inputs", "concurrency": "concurrency",
          "builtins": "built-in models"}
MODEL = "whisper-tiny.en"  # the smallest built-in: every case loads it in its own process


@dataclass
class Outcome:
    """What one command did."""

    cmd: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    hung: bool
    killed: bool = False  # killed by this script on purpose (SIGKILL midway)


@dataclass
class Case:
    """One verdict: the commands run and what was wrong with their results."""

    cls: str
    name: str
    runs: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth saying, not a failure
    skipped: str | None = None

    @property
    def verdict(self) -> str:
        if any(r.hung for r in self.runs):
            return "hang"
        if any(unclear(r) for r in self.runs):
            return "unclear"
        return "lost/wrong" if self.problems else "clean"


def unclear(run: Outcome) -> bool:
    return ("unexpected" in run.stderr or "Traceback" in run.stderr
            or (run.rc is not None and run.rc not in CLEAN_EXIT and not run.killed))


class Bench:
    """The shared inputs and the runner of commands."""

    def __init__(self, root: Path, timeout: float):
        self.root, self.timeout = root, timeout
        self.home = Path(os.environ.get("SPEECHKIT_HOME") or
                         Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "speechkit")
        self.n = 0
        self._avsr: Path | None = None
        self._parts: dict | None = None

    # --- running ---------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", TERMINAL_WIDTH="200")
        env.pop("FORCE_COLOR", None)
        return env | extra

    def start(self, *args: str | Path | bytes, home: Path | None = None,
              preexec: Callable[[], None] | None = None) -> tuple[subprocess.Popen, list[str], float]:
        cmd = [sys.executable, "-m", "speechkit", *(os.fsencode(a) if isinstance(a, Path) else a
                                                    for a in args)]
        extra = {"SPEECHKIT_HOME": str(home)} if home else {}

        def setup() -> None:
            os.setsid()  # a group of its own, so a hang is killed with its children
            if preexec:
                preexec()

        proc = subprocess.Popen(cmd, env=self.env(**extra), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=setup)
        shown = ["speechkit", *(os.fsdecode(a) if isinstance(a, bytes | Path) else str(a)
                                for a in cmd[3:])]
        return proc, shown, time.monotonic()

    def finish(self, started: tuple[subprocess.Popen, list[str], float]) -> Outcome:
        proc, shown, t0 = started
        left = max(1.0, self.timeout - (time.monotonic() - t0))
        try:
            out, err = proc.communicate(timeout=left)
            hung = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            hung = True
        return Outcome(shown, None if hung else proc.returncode, out.decode(errors="replace"),
                       err.decode(errors="replace"), time.monotonic() - t0, hung)

    def run(self, case: Case, *args: str | Path | bytes, **kw) -> Outcome:
        res = self.finish(self.start(*args, **kw))
        case.runs.append(res)
        return res

    def folder(self, name: str) -> Path:
        self.n += 1
        d = self.root / f"{self.n:03d}-{name}"
        d.mkdir()
        return d

    # --- inputs ----------------------------------------------------------------------------

    def clips(self) -> list[Path]:
        from tests.conftest import pocketsphinx_dir

        data = pocketsphinx_dir()
        if data is None:
            raise SystemExit("pocketsphinx-testdata not found: run `bash scripts/fetch-testdata.sh`")
        return sorted((data / "librivox").glob("*.wav"))

    def ffmpeg(self, out: Path, *args: str) -> Path:
        from speechkit.media.ffmpeg import ffmpeg_exe

        subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", *args, str(out)],
                       check=True, timeout=120)
        return out

    def face(self) -> Path:
        """A 2 s talking-face clip: the astronaut photograph with a real speech recording."""
        out = self.root / "face.mp4"
        if out.exists():
            return out
        from tests.face_media import face_photo

        return self.ffmpeg(out, "-loop", "1", "-framerate", "25", "-i", str(face_photo()),
                           "-i", str(self.clips()[1]), "-t", "2", "-r", "25",
                           "-vf", "scale=320:320,format=yuv420p", "-c:v", "libx264",
                           "-c:a", "aac", "-shortest")

    def faceless(self) -> Path:
        out = self.root / "noface.mp4"
        if not out.exists():
            self.ffmpeg(out, "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "1")
        return out

    @staticmethod
    def quiet() -> None:
        """No progress bars or notices from the tiny models built in this process."""
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()

    def parts(self) -> dict:
        """A tiny Llama-3-like LLM folder and a Llama-AVSR state dict (video only) for convert."""
        if self._parts is None:
            from tests.llama_avsr_parts import llama_avsr_state, tiny_llama3

            self.quiet()
            d = self.root / "parts"
            llm = tiny_llama3(d / "llama")
            state = {k: v for k, v in llama_avsr_state(llm).items() if not k.startswith("audio_")}
            self._parts = {"llm": llm, "state": state}
        return self._parts

    def avsr(self) -> Path:
        """A converted tiny AVSR checkpoint (Whisper audio + AV-HuBERT video)."""
        if self._avsr is None:
            from tests.llama_avsr_parts import tiny_llama_avsr

            self.quiet()
            d = self.root / "avsr-ckpt"
            d.mkdir()
            self._avsr = tiny_llama_avsr(d)
        return self._avsr


# --- checks ---------------------------------------------------------------------------------


def digest(paths: list[Path]) -> dict[Path, str | None]:
    out = {}
    for p in paths:
        if p.is_dir():
            out[p] = hashlib.sha256(b"".join(
                bytes(q.relative_to(p)) + q.read_bytes() for q in sorted(p.rglob("*")) if q.is_file()
            )).hexdigest()
        elif p.is_file():
            out[p] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[p] = None
    return out


def inputs_kept(case: Case, before: dict[Path, str | None]) -> None:
    for p, h in digest(list(before)).items():
        if h != before[p]:
            case.problems.append(f"input {p.name} was {'deleted' if h is None else 'changed'}")


def result_lines(case: Case, out: Path) -> list[dict]:
    if not out.exists():
        return []
    lines = []
    for n, raw in enumerate(out.read_bytes().splitlines(), 1):
        try:
            lines.append(json.loads(raw))
        except ValueError:
            case.problems.append(f"{out.name}:{n} is not a whole JSON line: {raw[:60]!r}")
    ids = [x.get("id") for x in lines]
    if len(ids) != len(set(ids)):
        case.problems.append(f"{out.name} repeats ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    return lines


def expect(case: Case, ok: bool, problem: str) -> None:
    if not ok:
        case.problems.append(problem)


def stem_ok(lines: list[dict], stem: str) -> bool:
    return any(Path(x.get("path") or "").stem == stem and x.get("status") == "ok" for x in lines)


def one_line(run: Outcome) -> bool:
    return len([x for x in run.stderr.splitlines() if x.strip()]) == 1


# --- lips + vsr/avsr ------------------------------------------------------------------------


def lips_cases(b: Bench) -> list[Case]:
    face, cases = b.face(), []

    def lips_beside(name: str, make: Callable[[Path], Path]) -> Case:
        c, d = Case("lips", name), b.folder("beside")
        bad = make(d)
        before = digest([face])
        run = b.run(c, "lips", bad, face, "--out", d / "out", home=d / "home")
        expect(c, run.rc == 1, f"exit {run.rc}, not 1 (one input failed)")
        expect(c, "not a regular file" in run.stderr, "the bad input is not named")
        names = sorted(p.name for p in (d / "out").iterdir()) if (d / "out").is_dir() else []
        expect(c, names == ["face.mp4", "face.png"], f"outputs {names}")
        inputs_kept(c, before)
        return c

    def fifo(d: Path) -> Path:
        os.mkfifo(d / "fifo.mp4")
        return d / "fifo.mp4"

    cases.append(lips_beside("lips on a FIFO beside a good clip", fifo))
    cases.append(lips_beside("lips on /dev/zero beside a good clip", lambda d: Path("/dev/zero")))

    def damaged(name: str, damage: Callable[[Path, Path], None]) -> Case:
        c, d = Case("lips", name), b.folder("cache")
        home = d / "home"
        first = b.run(c, "lips", face, "--out", d / "first", home=home)
        entries = sorted((home / "lips").rglob("*.npz"))
        if first.rc != 0 or len(entries) != 1:
            c.problems.append(f"the first run gave exit {first.rc} and {len(entries)} cache entries")
            return c
        damage(entries[0], d)
        run = b.run(c, "lips", face, "--out", d / "out", home=home)
        expect(c, run.rc == 0, f"exit {run.rc}")
        expect(c, str(entries[0]) in run.stderr, "the damaged entry is not named")
        expect(c, "a face in 50" in run.stdout, f"stdout: {run.stdout.strip()[:120]}")
        same = (d / "out" / "face.png").is_file() and \
            (d / "out" / "face.png").read_bytes() == (d / "first" / "face.png").read_bytes()
        expect(c, same, "the contact sheet differs from the one made with a fresh cache")
        return c

    def truncate(entry: Path, d: Path) -> None:
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])

    def flip(entry: Path, d: Path) -> None:
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0x40
        entry.write_bytes(bytes(data))

    def other(entry: Path, d: Path) -> None:
        home = d / "other-home"
        run = subprocess.run([sys.executable, "-m", "speechkit", "lips", str(b.faceless()), "--out",
                              str(d / "other")], env=b.env(SPEECHKIT_HOME=str(home)),
                             capture_output=True, timeout=b.timeout)
        (theirs,) = (home / "lips").rglob("*.npz") or [None]
        if theirs is None:
            raise RuntimeError(f"no cache entry for the faceless clip: {run.stderr[-200:]!r}")
        entry.write_bytes(theirs.read_bytes())

    cases.append(damaged("a truncated crop-cache entry", truncate))
    cases.append(damaged("a bit-flipped crop-cache entry", flip))
    cases.append(damaged("a cache entry of another clip", other))

    c, d = Case("lips", "a video with no face"), b.folder("noface")
    run = b.run(c, "lips", b.faceless(), "--out", d / "out", home=d / "home")
    expect(c, "a face in 0" in run.stdout or run.rc == 1, f"exit {run.rc}: {run.stdout.strip()[:120]}")
    cases.append(c)

    c, d = Case("lips", "a non-UTF-8 file name"), b.folder("utf8")
    odd = os.path.join(os.fsencode(d), b"f\xffce.mp4")
    os.symlink(os.fsencode(face), odd)
    run = b.run(c, "lips", odd, "--out", d / "out", home=d / "home")
    expect(c, run.rc == 0, f"exit {run.rc}")
    got = sorted(os.listdir(os.fsencode(d / "out"))) if (d / "out").is_dir() else []
    expect(c, got == [b"f\xffce.mp4", b"f\xffce.png"], f"outputs {got}")
    cases.append(c)

    for sub in ("", "sub"):
        c, d = Case("lips", f"--out {'under' if sub else 'that is'} a file"), b.folder("outfile")
        (d / "taken").write_text("notes\n")
        run = b.run(c, "lips", face, "--out", d / "taken" / sub if sub else d / "taken",
                    home=d / "home")
        expect(c, run.rc not in (0, None) and one_line(run), f"exit {run.rc}: {run.stderr[-200:]}")
        expect(c, (d / "taken").read_text() == "notes\n", "the file at --out was changed")
        cases.append(c)

    c, d = Case("lips", "a full disk (ulimit -f 30 kB)"), b.folder("fulldisk")
    (d / "again.mp4").symlink_to(face)

    def small_disk() -> None:  # writes past 30 kB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))

    run = b.run(c, "lips", face, d / "again.mp4", "--out", d / "out", home=d / "home",
                preexec=small_disk)
    expect(c, run.rc == 1, f"exit {run.rc}")
    expect(c, "again" in run.stderr, "the second clip was not tried")
    for p in (d / "out").iterdir() if (d / "out").is_dir() else []:
        expect(c, not p.name.startswith(".") and p.suffix != ".png", f"{p.name} left behind")
    cases.append(c)

    ckpt = b.avsr()
    for task in ("vsr", "avsr"):
        c, d = Case("lips", f"{task} on a FIFO and /dev/zero beside a good clip"), b.folder(task)
        os.mkfifo(d / "fifo.mp4")
        (d / "zero.mp4").symlink_to("/dev/zero")
        run = b.run(c, "transcribe", d / "fifo.mp4", d / "zero.mp4", face, "--model", ckpt,
                    "--task", task, "--out", d / "out.jsonl", home=d / "home")
        lines = result_lines(c, d / "out.jsonl")
        by = {Path(x["path"]).name: x for x in lines}
        expect(c, run.rc == 1, f"exit {run.rc}")
        for name in ("fifo.mp4", "zero.mp4"):
            expect(c, by.get(name, {}).get("status") == "error"
                   and "not a regular file" in (by[name].get("error") or ""), f"{name}: {by.get(name)}")
        expect(c, by.get("face.mp4", {}).get("status") == "ok", f"face.mp4: {by.get('face.mp4')}")
        cases.append(c)

    c, d = Case("lips", "avsr on a video with a face and no audio"), b.folder("silent")
    silent = b.ffmpeg(d / "silent.mp4", "-i", str(face), "-an", "-c:v", "copy")
    run = b.run(c, "transcribe", silent, "--model", ckpt, "--task", "avsr", "--out",
                d / "out.jsonl", home=d / "home")
    lines = result_lines(c, d / "out.jsonl")
    expect(c, run.rc == 0 and len(lines) == 1 and lines[0]["status"] == "ok", f"exit {run.rc}, {lines}")
    expect(c, bool(lines) and (lines[0].get("extras") or {}).get("fallback") == "video_only",
           "not marked as decoded from the video alone")
    cases.append(c)
    return cases


# --- convert / checkpoint -------------------------------------------------------------------


class Reduce:
    """A pickle that would create a file when loaded (a stand-in for running any code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def convert_cases(b: Bench) -> list[Case]:
    import torch

    parts, cases = b.parts(), []
    llm = parts["llm"]

    def conv(c: Case, ckpt: Path, out: Path, *more: str) -> Outcome:
        return b.run(c, "convert", "llama-avsr", "--ckpt", ckpt, "--llm", llm, "--out", out, *more)

    c, d = Case("convert", "--ckpt holder/model.pth --out holder --force"), b.folder("holder")
    holder = d / "holder"
    holder.mkdir()
    torch.save(parts["state"], holder / "model.pth")
    before = digest([holder / "model.pth", llm])
    run = conv(c, holder / "model.pth", holder, "--force")
    expect(c, run.rc != 0 and one_line(run), f"exit {run.rc}: {run.stderr[-200:]}")
    inputs_kept(c, before)
    expect(c, sorted(p.name for p in holder.iterdir()) == ["model.pth"], "holder gained files")
    cases.append(c)

    c, d = Case("convert", "--out equal to the --llm folder (--force)"), b.folder("outllm")
    torch.save(parts["state"], d / "model.pth")
    before = digest([d / "model.pth", llm])
    run = conv(c, d / "model.pth", llm, "--force")
    expect(c, run.rc != 0 and one_line(run), f"exit {run.rc}: {run.stderr[-200:]}")
    inputs_kept(c, before)
    cases.append(c)

    makers: list[tuple[str, Callable[[Path], object]]] = [
        ("a text file as --ckpt", lambda p: p.write_text("step,loss\n1,0.5\n")),
        ("a directory as --ckpt", lambda p: p.mkdir()),
        ("a FIFO as --ckpt", lambda p: os.mkfifo(p)),
        ("an empty file as --ckpt", lambda p: p.touch()),
        ("/dev/zero as --ckpt", lambda p: p.symlink_to("/dev/zero")),
    ]
    for name, make in makers:
        c, d = Case("convert", name), b.folder("ckpt")
        make(d / "model.pth")
        run = conv(c, d / "model.pth", d / "out")
        expect(c, run.rc not in (0, None) and one_line(run), f"exit {run.rc}: {run.stderr[-200:]}")
        expect(c, not (d / "out").exists(), "an output folder was made")
        cases.append(c)

    for value in (float("nan"), float("inf")):
        c, d = Case("convert", f"{value} in a weight"), b.folder("nonfinite")
        state = dict(parts["state"])
        state["video_proj.2.weight"] = state["video_proj.2.weight"].clone()
        state["video_proj.2.weight"][3, 5] = value
        torch.save(state, d / "model.pth")
        run = conv(c, d / "model.pth", d / "out")
        expect(c, run.rc not in (0, None) and "NaN or infinite" in run.stderr, f"exit {run.rc}")
        expect(c, not (d / "out").exists(), "an output folder was made")
        cases.append(c)

    c, d = Case("convert", "a pickle with __reduce__ as --ckpt"), b.folder("pickle")
    torch.save({"video_proj.0.weight": Reduce(d / "MARKER")}, d / "model.pth")
    run = conv(c, d / "model.pth", d / "out")
    expect(c, not (d / "MARKER").exists(), "loading the checkpoint ran its code (marker made)")
    expect(c, run.rc not in (0, None) and one_line(run), f"exit {run.rc}: {run.stderr[-200:]}")
    expect(c, not (d / "out").exists(), "an output folder was made")
    cases.append(c)

    c, d = Case("convert", "SIGKILL midway, then a rerun"), b.folder("killed")
    torch.save(parts["state"], d / "model.pth")
    out = d / "ckpts" / "avsr"
    started = b.start("convert", "llama-avsr", "--ckpt", d / "model.pth", "--llm", llm, "--out", out)
    proc, t0, staging = started[0], time.monotonic(), []
    while time.monotonic() - t0 < b.timeout and proc.poll() is None and not staging:
        staging = list(out.parent.glob(".avsr.staging-*")) if out.parent.is_dir() else []
        time.sleep(0.005)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    first = b.finish(started)
    first.killed = first.rc == -signal.SIGKILL
    c.runs.append(first)
    expect(c, bool(staging), "the conversion ended before its staging folder was seen")
    run = conv(c, d / "model.pth", out)
    expect(c, run.rc == 0, f"rerun exit {run.rc}: {run.stderr[-200:]}")
    left = sorted(p.name for p in out.parent.iterdir())
    expect(c, left == ["avsr"], f"left beside the output: {left}")
    expect(c, (out / "speechkit.json").is_file(), "the rerun wrote no speechkit.json")
    cases.append(c)

    c, d = Case("convert", "checkpoint new, then again over it without --force"), b.folder("new")
    args = ("checkpoint", "new", "--audio-encoder", MODEL, "--llm", llm, "--out", d / "ck")
    run = b.run(c, *args)
    expect(c, run.rc == 0 and (d / "ck" / "speechkit.json").is_file(), f"exit {run.rc}: {run.stderr[-200:]}")
    before = digest([d / "ck", llm])
    again = b.run(c, *args)
    expect(c, again.rc not in (0, None) and one_line(again), f"again: exit {again.rc}: {again.stderr[-200:]}")
    inputs_kept(c, before)
    cases.append(c)

    c, d = Case("convert", "checkpoint new --out equal to the --llm folder --force"), b.folder("newllm")
    before = digest([llm])
    run = b.run(c, "checkpoint", "new", "--audio-encoder", MODEL, "--llm", llm, "--out", llm, "--force")
    expect(c, run.rc not in (0, None), f"exit {run.rc}")
    inputs_kept(c, before)
    cases.append(c)
    return cases


# --- merge / --shard ------------------------------------------------------------------------


def merge_cases(b: Bench) -> list[Case]:
    from speechkit.data import Result, dumps_line

    clips, cases = b.clips(), []
    model = {"name": MODEL, "source": f"builtin:{MODEL}", "sha256": "a" * 64,
             "engine": "ctranslate2", "quant": "int8"}
    decode = {"task": "transcribe", "language": None, "beam_size": 1}

    def shard(path: Path, *ids: str, model: dict = model, decode: dict = decode) -> Path:
        path.write_text("".join(dumps_line(Result(id=i, path=f"{i}.wav", text=f"text {i}", model=model,
                                                  decode=decode).to_dict()) for i in ids))
        return path

    c, d = Case("merge", "merge live.jsonl live.jsonl while a transcribe writes it"), b.folder("live")
    live = d / "live.jsonl"
    started = b.start("transcribe", *clips, "--model", MODEL, "--device", "cpu", "--out", live)
    t0 = time.monotonic()
    while time.monotonic() - t0 < b.timeout and started[0].poll() is None and not (
            live.exists() and live.read_bytes().count(b"\n") >= 1):
        time.sleep(0.02)
    raced = started[0].poll() is None
    merged = b.run(c, "merge", live, live)
    writer = b.finish(started)
    c.runs.append(writer)
    expect(c, raced, "the transcribe ended before the merge could race it")
    expect(c, merged.rc != 0, f"merge exit {merged.rc} on a file being written")
    lines = result_lines(c, live)
    expect(c, sorted(x["id"] for x in lines if x["status"] == "ok") == sorted(map(str, clips)),
           f"live.jsonl holds {len(lines)} lines, not one ok line per clip")
    cases.append(c)

    for name, other in [("shards from different models", {"model": {**model, "name": "whisper-base",
                                                                     "sha256": "b" * 64}}),
                        ("shards from different beams", {"decode": {**decode, "beam_size": 5}})]:
        c, d = Case("merge", name), b.folder("mixed")
        a, o = shard(d / "a.jsonl", "1"), shard(d / "b.jsonl", "2", **other)
        before = digest([a, o])
        run = b.run(c, "merge", d / "all.jsonl", a, o)
        expect(c, run.rc not in (0, None) and one_line(run), f"exit {run.rc}: {run.stderr[-200:]}")
        expect(c, not (d / "all.jsonl").exists(), "a mixed all.jsonl was written")
        inputs_kept(c, before)
        cases.append(c)

    c, d = Case("merge", "a torn shard"), b.folder("torn")
    a = shard(d / "a.jsonl", "1", "2")
    with open(a, "a") as fh:
        torn = Result(id="3", path="3.wav", text="x", model=model, decode=decode)
        fh.write(dumps_line(torn.to_dict())[:40])
    before = digest([a])
    run = b.run(c, "merge", d / "all.jsonl", a)
    expect(c, run.rc not in (0, None) and "torn" in run.stderr, f"exit {run.rc}: {run.stderr[-200:]}")
    inputs_kept(c, before)
    cases.append(c)

    c, d = Case("merge", "duplicate ids across shards"), b.folder("dups")
    a, o = shard(d / "a.jsonl", "1", "2"), shard(d / "b.jsonl", "2", "3")
    before = digest([a, o])
    run = b.run(c, "merge", d / "all.jsonl", a, o)
    lines = result_lines(c, d / "all.jsonl")
    expect(c, sorted(x["id"] for x in lines) == ["1", "2", "3"] or run.rc != 0,
           f"all.jsonl ids {[x['id'] for x in lines]}")
    expect(c, "2" in run.stderr + run.stdout, "the repeated id is not reported")
    inputs_kept(c, before)
    cases.append(c)

    for spec in ("", "3/2", "2/2", "1/0", "-1/2"):  # K counts from 0: 0 <= K < N
        c, d = Case("merge", f"--shard {spec!r}"), b.folder("shard")
        run = b.run(c, "transcribe", clips[0], "--model", MODEL, "--shard", spec, "--out", d / "o.jsonl")
        expect(c, run.rc not in (0, None) and one_line(run), f"exit {run.rc}: {run.stderr[-200:]}")
        expect(c, not (d / "o.jsonl").exists(), "a results file was made")
        cases.append(c)

    c, d = Case("merge", "--shard 0/2 and 1/2, then merge"), b.folder("shards")
    runs = [b.start("transcribe", *clips, "--model", MODEL, "--device", "cpu", "--shard", f"{k}/2",
                    "--out", d / f"s{k}.jsonl") for k in (0, 1)]
    c.runs += [b.finish(r) for r in runs]
    run = b.run(c, "merge", d / "all.jsonl", d / "s0.jsonl", d / "s1.jsonl")
    lines = result_lines(c, d / "all.jsonl")
    expect(c, run.rc == 0, f"merge exit {run.rc}: {run.stderr[-200:]}")
    expect(c, sorted(x["id"] for x in lines if x["status"] == "ok") == sorted(map(str, clips)),
           f"all.jsonl ids {sorted(x['id'] for x in lines)}")
    cases.append(c)
    return cases


# --- --runner ray ---------------------------------------------------------------------------


def ray_cases(b: Bench) -> list[Case]:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return [Case("ray", "ray is not installed here", skipped="ray is not installed")]
    clip, cases = b.clips()[0], []
    for address in ("127.0.0.1:1", "ray://127.0.0.1:1", "not an address", "host:99999"):
        c, d = Case("ray", f"--address {address!r}"), b.folder("ray")
        run = b.run(c, "transcribe", clip, "--runner", "ray", "--address", address, "--model", MODEL,
                    "--out", d / "o.jsonl")
        said = [x for x in run.stderr.splitlines() if x.strip() and "gcs_client" not in x]
        expect(c, run.rc not in (0, None) and len(said) == 1, f"exit {run.rc}: {run.stderr[-300:]}")
        expect(c, run.seconds < b.timeout / 2, f"took {run.seconds:.0f} s")
        expect(c, not any(x.get("status") == "ok" for x in result_lines(c, d / "o.jsonl")),
               "an item is ok without a cluster")
        cases.append(c)
    return cases


# --- manifests / inputs ---------------------------------------------------------------------


def manifest_cases(b: Bench) -> list[Case]:
    clips, cases = b.clips(), []
    bad: list[tuple[str, Callable[[Path], bytes]]] = [
        ("nesting [[[ 10^5 levels", lambda d: b"[" * 100_000 + b"]" * 100_000),
        ("duration 1e400", lambda d: b'{"path": "a.wav", "id": "inf", "duration": 1e400}'),
        ("duration NaN", lambda d: b'{"path": "a.wav", "id": "nan", "duration": NaN}'),
        ("a lone-surrogate id", lambda d: b'{"path": "a.wav", "id": "sur\\ud800"}'),
        ("a segment shorter than one sample", lambda d: b'{"path": "a.wav", "id": "t", "duration": 1e-9}'),
        ("a negative offset", lambda d: b'{"path": "a.wav", "id": "neg", "offset": -0.5}'),
        ("path /proc/kmsg", lambda d: b'{"path": "/proc/kmsg", "id": "kmsg"}'),
        ("path /proc/self/status", lambda d: b'{"path": "/proc/self/status", "id": "proc"}'),
        ("a FIFO path", lambda d: (os.mkfifo(d / "fifo.wav"), b'{"path": "fifo.wav", "id": "fifo"}')[1]),
        ("path /dev/zero", lambda d: b'{"path": "/dev/zero", "id": "zero"}'),
        ("a directory path", lambda d: (os.mkdir(d / "dir.wav"), b'{"path": "dir.wav", "id": "dir"}')[1]),
        ("a non-UTF-8 line", lambda d: b'{"path": "a.wav", "id": "b\xff\xfe"}'),
    ]
    for name, make in bad:
        c, d = Case("manifests", name), b.folder("manifest")
        (d / "a.wav").symlink_to(clips[0])
        (d / "b.wav").symlink_to(clips[1])
        lines = [b'{"path": "a.wav", "id": "good1"}', make(d), b'{"path": "b.wav", "id": "good2"}']
        (d / "m.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        before = digest([d / "m.jsonl", clips[0], clips[1]])
        run = b.run(c, "transcribe", d / "m.jsonl", "--model", MODEL, "--out", d / "out.jsonl")
        got = result_lines(c, d / "out.jsonl")
        expect(c, run.rc == 1, f"exit {run.rc}")
        expect(c, len(got) == 3, f"{len(got)} result lines for 3 manifest lines")
        ok = {x["id"] for x in got if x["status"] == "ok"}
        expect(c, ok == {"good1", "good2"}, f"ok lines: {sorted(ok)}")
        errs = [x for x in got if x["status"] == "error"]
        if errs and "m.jsonl:2" not in (errs[0].get("error") or ""):
            c.notes.append(f"the error does not name m.jsonl:2: {errs[0].get('error')!r}")
        inputs_kept(c, before)
        cases.append(c)

    c, d = Case("manifests", "100k identical lines"), b.folder("many")
    (d / "a.wav").symlink_to(clips[0])
    (d / "m.jsonl").write_text('{"path": "a.wav", "id": "same"}\n' * 100_000)
    run = b.run(c, "transcribe", d / "m.jsonl", "--model", MODEL, "--out", d / "out.jsonl")
    got = result_lines(c, d / "out.jsonl")
    expect(c, len(got) == 100_000, f"{len(got)} result lines for 100000 manifest lines")
    expect(c, sum(x["status"] == "ok" for x in got) == 1, "not exactly one ok line")
    cases.append(c)
    return cases


# --- concurrency ----------------------------------------------------------------------------


def concurrency_cases(b: Bench) -> list[Case]:
    clips, cases = b.clips(), []
    for n in (2, 5):
        c, d = Case("concurrency", f"{n} transcribes on one --out at once"), b.folder("together")
        started = [b.start("transcribe", *clips[:3], "--model", MODEL, "--device", "cpu", "--out",
                           d / "out.jsonl") for _ in range(n)]
        runs = [b.finish(s) for s in started]
        c.runs += runs
        lines = result_lines(c, d / "out.jsonl")
        expect(c, sorted(x["id"] for x in lines if x["status"] == "ok") == sorted(map(str, clips[:3])),
               f"out.jsonl ids {[x['id'] for x in lines]}")
        expect(c, any(r.rc == 0 for r in runs), f"exits {[r.rc for r in runs]}")
        refused = [r for r in runs if r.rc not in (0, None)]
        expect(c, all("another speechkit run" in r.stderr for r in refused),
               "a refused run does not say another run writes the file")
        cases.append(c)

    face = b.face()
    c, d = Case("concurrency", "3 concurrent lips on one clip (one cache entry)"), b.folder("lips3")
    started = [b.start("lips", face, "--out", d / f"out{k}", home=d / "home") for k in range(3)]
    runs = [b.finish(s) for s in started]
    c.runs += runs
    expect(c, all(r.rc == 0 for r in runs), f"exits {[r.rc for r in runs]}")
    pngs = {(d / f"out{k}" / "face.png").read_bytes() if (d / f"out{k}" / "face.png").is_file() else b""
            for k in range(3)}
    expect(c, len(pngs) == 1 and b"" not in pngs, "the three contact sheets differ or are missing")
    after = b.run(c, "lips", face, "--out", d / "after", home=d / "home")
    expect(c, after.rc == 0 and "computed again" not in after.stderr,
           f"the cache entry they left is not whole: {after.stderr[-200:]}")
    cases.append(c)
    return cases


# --- built-in models ------------------------------------------------------------------------


def builtin_cases(b: Bench) -> list[Case]:
    clip, cases = b.clips()[0], []
    for extra in ([], ["--language", "en"]):
        c, d = Case("builtins", f"transcribe clip --model {MODEL} {' '.join(extra)}".strip()), b.folder("bi")
        run = b.run(c, "transcribe", clip, "--model", MODEL, *extra, "--out", d / "o.jsonl")
        lines = result_lines(c, d / "o.jsonl")
        expect(c, run.rc == 0 and len(lines) == 1 and lines[0]["status"] == "ok", f"exit {run.rc}, {lines}")
        expect(c, bool(lines) and "dashwood" in (lines[0].get("text") or "").lower(),
               f"text: {lines[0].get('text') if lines else None!r}")
        cases.append(c)
    return cases


BUILDERS = {"lips": lips_cases, "convert": convert_cases, "merge": merge_cases, "ray": ray_cases,
            "manifests": manifest_cases, "concurrency": concurrency_cases, "builtins": builtin_cases}


def machine() -> str:
    from speechkit.threads import available_cores, cpu_model

    return f"{cpu_model()}, {available_cores()} cores, Python {platform.python_version()}"


def table(cls: str, cases: list[Case]) -> str:
    counted = [c for c in cases if not c.skipped]
    n = {v: sum(c.verdict == v for c in counted) for v in ("clean", "lost/wrong", "hang", "unclear")}
    rows = ["| class | tried | clean | lost/wrong | hangs | unclear error |", "|---|---|---|---|---|---|",
            f"| {TITLES[cls]} | {len(counted)} | {n['clean']} | {n['lost/wrong']} | {n['hang']} "
            f"| {n['unclear']} |"]
    skipped = [f"skipped: {c.skipped}" for c in cases if c.skipped]
    return "\n".join(rows + skipped)


def first_stderr_line(case: Case) -> str:
    """The first error or warning line (the run summary table also goes to stderr)."""
    lines = [x.strip() for r in case.runs for x in r.stderr.splitlines() if x.strip()]
    said = [x for x in lines if x.lower().startswith(("error", "warning")) or "Traceback" in x]
    return (said or lines or ["(stderr empty)"])[0][:300]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=CLASSES, action="append", help="run only this class (repeatable)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds each command may run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="speechkit-hostile-"))
    bench, t0 = Bench(root, args.timeout), time.monotonic()
    print(f"machine: {machine()}")
    print(f"timeout: {args.timeout:.0f} s a command; inputs in {root}\n")
    everything: list[Case] = []
    try:
        for cls in args.only or CLASSES:
            c0 = time.monotonic()
            try:
                cases = BUILDERS[cls](bench)
            except Exception as exc:  # the harness failed, not speechkit: say so and go on
                cases = [Case(cls, "building the class's inputs", skipped=f"harness: {exc!r}")]
            everything += cases
            print(f"### {TITLES[cls]} ({time.monotonic() - c0:.0f} s)\n")
            print(table(cls, cases) + "\n", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"wall time: {time.monotonic() - t0:.0f} s")
    timed = [(r.seconds, c) for c in everything for r in c.runs]
    if timed:
        longest, case = max(timed, key=lambda x: x[0])
        print(f"longest command: {longest:.1f} s ({TITLES[case.cls]}: {case.name}); "
              f"{len(timed)} commands in {len(everything)} cases\n")
    bad = [c for c in everything if not c.skipped and c.verdict != "clean"]
    print(f"### not clean: {len(bad)}\n")
    for c in bad:
        print(f"- [{c.verdict}] {TITLES[c.cls]}: {c.name}")
        for r in c.runs:
            print(f"    $ {' '.join(r.cmd)}   -> exit {r.rc}, {r.seconds:.1f} s")
        print(f"    stderr: {first_stderr_line(c)}")
        for p in c.problems:
            print(f"    problem: {p}")
    noted = [c for c in everything if c.notes]
    if noted:
        print(f"\n### notes on {len(noted)} cases\n")
    for c in noted:
        print(f"- {TITLES[c.cls]}: {c.name}: " + "; ".join(c.notes))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

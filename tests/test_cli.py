"""The command line through its real entry point (`python -m speechkit`, i.e. speechkit.cli:main):
usage errors, help, checks before the model loads, Ctrl-C, and user text that looks like markup."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechkit.errors import SpeechkitError
from speechkit.evaluation.metrics.bleu import tokenizer_for
from speechkit.languages import LANGUAGES, check_language, language_name

ROOT = Path(__file__).resolve().parents[1]
INTERRUPTED = "interrupted: finished results are kept; rerun the same command to resume"
# What typer prints beside options and arguments when left alone: `<bool>`, `<list[str]>` ...
TYPE_PLACEHOLDER = re.compile(r"<(bool|str|int|float|path|file|dir|list\[[^>]*\]|\w+ range)>")


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", TERMINAL_WIDTH="200")
    env.pop("FORCE_COLOR", None)
    return env | extra


def speechkit(*args: str | Path, cwd: Path | None = None, timeout: float = 300,
              ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechkit", *map(str, args)], cwd=cwd,
                          env=cli_env(), capture_output=True, text=True, timeout=timeout)


def librivox_clips(testdata: Path) -> list[Path]:
    return sorted((testdata / "librivox").glob("*.wav"))


# --- usage errors and help -----------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "No such option: --bogus"),
    (["transcribe", "a.wav", "--langage", "en"], "No such option: --langage"),
    (["transcirbe", "a.wav"], "Did you mean 'transcribe'?"),
    (["transcribe"], "Missing argument"),
    (["transcribe", "a.wav", "--beam-size", "0"], "Invalid value for '--beam-size'"),
    (["bench", "librivox-mini", "--limit", "many"], "Invalid value for '--limit'"),
])
def test_usage_errors_exit_2_with_clicks_own_message(args, message):
    r = speechkit(*args)
    assert r.returncode == 2, r.stderr
    assert "Usage:" in r.stderr and message in r.stderr.split("Error: ")[1]
    assert "unexpected" not in r.stderr and "Traceback" not in r.stderr


def test_a_misspelled_option_suggests_the_right_one():
    r = speechkit("transcribe", "a.wav", "--langage", "en")
    assert "--language" in r.stderr.split("Error:")[1]


def test_speechkit_alone_prints_the_help_and_no_error():
    r = speechkit()
    assert r.returncode == 2  # click's no_args_is_help
    assert "Usage:" in r.stdout and "transcribe" in r.stdout and "bench" in r.stdout
    assert "error" not in r.stderr.lower() and r.stderr.strip() == ""


@pytest.mark.parametrize("command", [
    [], ["transcribe"], ["bench"], ["score"], ["compare"], ["manifest"], ["checkpoint", "new"],
    ["models"], ["models", "show"],
])
def test_help_has_no_type_placeholders(command):
    r = speechkit(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout
    assert not TYPE_PLACEHOLDER.search(r.stdout), TYPE_PLACEHOLDER.search(r.stdout).group(0)


def test_help_paragraphs_are_wrapped_by_the_terminal_not_the_docstring():
    r = speechkit("transcribe", "--help")
    (line,) = [ln for ln in r.stdout.splitlines() if "Resumes by default" in ln]
    assert "every item succeeded" in line and "2 for usage errors" in line  # one line at 200 columns
    assert "--model" in r.stdout and "MODEL" in r.stdout  # an option that takes a value says so


# --- languages -----------------------------------------------------------------------------


def test_language_codes_names_and_regions_give_whisper_codes():
    assert len(LANGUAGES) == 100
    assert [check_language(v) for v in ("en", "English", "english", " EN ", "zh-CN", "Mandarin",
                                         "pt_BR", "yue")] == ["en", "en", "en", "en", "zh", "zh",
                                                               "pt", "yue"]
    assert check_language(None) is None
    assert language_name("de") == "German" and language_name("xx") == "xx"
    assert tokenizer_for("Japanese") == tokenizer_for("ja")
    assert tokenizer_for("Chinese") == tokenizer_for("zh-CN") == "zh"


def test_an_unknown_language_is_an_error_that_names_the_fix():
    with pytest.raises(SpeechkitError, match=r"--language 'englsh' .*did you mean english\?"):
        check_language("englsh")
    with pytest.raises(SpeechkitError, match=r"--target-language 'xx' .*e\.g\. en, de"):
        check_language("xx", "--target-language")


# --- checks before the model loads ----------------------------------------------------------
# The unknown model name is only looked at when the model loads: an error about anything else
# proves that nothing was loaded.


@pytest.mark.parametrize(("args", "message"), [
    (["transcribe", "{clip}", "--language", "xx"], "--language 'xx' is not a language"),
    (["transcribe", "{clip}", "--target-language", "klingon"], "--target-language 'klingon'"),
    (["transcribe", "{missing}", "{missing2}"], "nothing to run: "),
    (["transcribe", "{clip}", "--model", "whisper-base", "--task", "asr"],
     "whisper-base is a Whisper model: it does --task transcribe or translate, not 'asr'"),
    (["bench", "librivox-mini", "--language", "xx"], "--language 'xx' is not a language"),
    (["bench", "librivox-mini", "--shard", "4/2"], "--shard 4/2: use K/N"),
    (["bench", "librivox-mini", "--shard", "two"], "--shard 'two': use K/N"),
    (["bench", "librivox-mini", "--split", "nope"], "suite librivox-mini has no split 'nope'"),
    (["bench", "librispeech", "--data-root", "{tmp}"], "no test-clean/ folder in"),
    (["bench", "librispeech", "--data-root", "{missing}"], "does not exist"),
    (["bench", "covost2", "--split", "en-de", "--data-root", "{tmp}", "--model", "whisper-base"],
     "whisper-base is a Whisper model: it cannot do st into de"),
    (["transcribe", "{clip}", "--dtype", "bogus"], "unknown --dtype 'bogus'; use one of auto, float32"),
    (["bench", "librivox-mini", "--quant", "3bit"], "unknown --quant '3bit'; use one of 4bit"),
    (["transcribe", "{clip}", "--dtype", "int8", "--device", "cpux"], "unknown --device 'cpux'"),
])
def test_bad_values_are_one_line_usage_errors_before_the_model_loads(args, message, testdata,
                                                                     tmp_path):
    fill = {"clip": str(librivox_clips(testdata)[0]), "missing": str(tmp_path / "nope.wav"),
            "missing2": str(tmp_path / "nope2.wav"), "tmp": str(tmp_path)}
    argv = [a.format(**fill) for a in args]
    if "--model" not in argv:
        argv += ["--model", "no-such-model"]
    r = subprocess.run([sys.executable, "-m", "speechkit", *argv], env=cli_env(
        SPEECHKIT_TESTDATA=str(testdata)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one line
    assert "unknown model" not in r.stderr


@pytest.mark.slow
def test_language_names_are_recorded_as_codes(testdata, make_media, tmp_path):
    clip = make_media("english-name.wav", "-i", str(librivox_clips(testdata)[0]), "-t", "3")
    r = speechkit("transcribe", clip, "--language", "English", "--out", tmp_path / "r.jsonl",
                  "--device", "cpu")
    assert r.returncode == 0, r.stderr
    (line,) = (tmp_path / "r.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["decode"]["language"] == "en" and rec["language"] == "en"


# --- Ctrl-C --------------------------------------------------------------------------------


def _start_transcribe(args: list[str | Path], cwd: Path) -> subprocess.Popen:
    # SIGINT restored to its default: a shell starting pytest in the background ignores it.
    return subprocess.Popen(
        [sys.executable, "-m", "speechkit", "transcribe", *map(str, args)], cwd=cwd, env=cli_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before it was interrupted: {proc.stderr.read()}"
        assert time.monotonic() < end, "the run never got that far"
        time.sleep(0.02)


def _interrupt(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.slow
def test_ctrl_c_in_the_batch_loop_says_how_to_resume_and_exits_130(testdata, make_media,
                                                                   tmp_path):
    clips = librivox_clips(testdata)
    long = make_media("long.wav", *[a for c in clips * 4 for a in ("-i", str(c))], "-filter_complex",
                      f"concat=n={len(clips) * 4}:v=0:a=1")
    out = tmp_path / "r.jsonl"
    proc = _start_transcribe([*clips, long, "--out", out, "--batch-size", "1", "--device", "cpu"],
                             tmp_path)
    _wait_for(out.exists, proc)  # the results file opens once the model is loaded
    rc, err = _interrupt(proc)
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == INTERRUPTED
    assert "Traceback" not in err
    for line in out.read_text().splitlines():  # what was written is whole lines
        assert json.loads(line)["status"] == "ok"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the load")
def test_ctrl_c_while_the_model_loads_says_how_to_resume_and_exits_130(testdata, tmp_path):
    proc = _start_transcribe([librivox_clips(testdata)[0], "--out", tmp_path / "r.jsonl",
                              "--device", "cpu"], tmp_path)
    maps = Path(f"/proc/{proc.pid}/maps")
    _wait_for(lambda: "libctranslate2" in maps.read_text(), proc)  # its engine is loading: the load
    rc, err = _interrupt(proc)
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == INTERRUPTED
    out = tmp_path / "r.jsonl"  # opened (and locked) before the model loads: no line in it
    assert "Traceback" not in err and (not out.exists() or out.read_text() == "")


# --- user text that looks like rich markup ---------------------------------------------------


@pytest.mark.slow
def test_file_names_that_look_like_markup_print_as_they_are(testdata, make_media, tmp_path):
    clip = str(librivox_clips(testdata)[0])
    bold = make_media("[bold]c.wav", "-i", clip, "-t", "2")
    (bold.parent / "a[").mkdir(exist_ok=True)
    slash = make_media("a[/x]b.wav", "-i", clip, "-t", "2")
    (bold.parent / "e[").mkdir(exist_ok=True)
    empty = bold.parent / "e[/red]x.wav"  # fails to decode: its name goes into a failure line
    empty.write_bytes(b"")
    out = tmp_path / "r[/x][bold].jsonl"
    r = speechkit("transcribe", slash, bold, empty, "--out", out, "--device", "cpu")
    assert r.returncode == 1, r.stderr  # the empty file failed, the others ran
    assert f"failed: {empty}" in r.stderr.replace("\n", "")
    assert str(out) in r.stderr  # the summary's results row
    assert "unexpected" not in r.stderr and "Traceback" not in r.stderr
    done = {json.loads(line)["path"]: json.loads(line)["status"]
            for line in out.read_text().splitlines()}
    assert done == {str(slash): "ok", str(bold): "ok", str(empty): "error"}

    missing = speechkit("transcribe", "[/red].wav", cwd=tmp_path)  # also a glob pattern
    assert missing.returncode == 2
    assert "[/red].wav" in missing.stderr and "unexpected" not in missing.stderr


def test_tables_print_markup_looking_names_as_they_are():
    from rich.console import Console

    from speechkit.commands.tables import compare_table, rich_table

    console = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(rich_table([{"system": "[/x]model[bold]", "metric": "wer", "value": 0.1,
                               "source": "this run"}], title="[/red]suite: [bold]model"))
    console.print(compare_table([{"metric": "[/x]wer", "baseline": 0.1, "new": 0.2, "delta": 0.1,
                                  "direction": "lower", "threshold": 0.0, "regressed": True,
                                  "note": "[/note]"}], title="a[/x].json -> [bold]b.json"))
    text = console.export_text()
    for s in ("[/x]model[bold]", "[/red]suite: [bold]model", "[/x]wer", "[/note]",
              "a[/x].json -> [bold]b.json"):
        assert s in text

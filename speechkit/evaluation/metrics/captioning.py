"""Audio captioning: BLEU-1..4, ROUGE-L, CIDEr-D, and METEOR/SPICE/SPIDEr where Java allows.

Protocol (AudioCaps, Clotho, DCASE; the coco-caption code that aac-metrics reproduces):
captions are lowercased and PTB-tokenized (Stanford PTBTokenizer, punctuation dropped),
then scored with pycocoevalcap: BLEU with the "closest" reference length, ROUGE-L
(beta 1.2), CIDEr-D (tf-idf n-grams 1-4 with idf from the test references, clipping,
gaussian length penalty sigma 6, x10), METEOR 1.5 and SPICE (both Java), SPIDEr =
mean(CIDEr-D, SPICE). Scores are on the pycocoevalcap scale (papers often print x100).

A metric that could not run is left out of the numbers and named in `not_run` with the
reason, never reported as 0. Without Java, PTB tokenization falls back to a close Python
approximation and `tokenizer` says so.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

# Tokens the coco-caption PTB wrapper drops after tokenization.
PTB_PUNCTUATION = frozenset(
    [
        "''",
        "'",
        "``",
        "`",
        "-lrb-",
        "-rrb-",
        "-lcb-",
        "-rcb-",
        ".",
        "?",
        "!",
        ",",
        ":",
        "-",
        "--",
        "...",
        ";",
    ]
)
_PY_TOKEN = re.compile(r"\w+(?:-\w+)*|'\w+|\.\.\.|--|[^\w\s]")
_PY_DROPPED = frozenset('()[]{}"')
INSTALL_HINT = "pip install pycocoevalcap"


def _pycoco_dir() -> Path | None:
    spec = importlib.util.find_spec("pycocoevalcap")  # a namespace package: no __init__.py
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(next(iter(spec.submodule_search_locations)))
    return pkg if (pkg / "cider" / "cider.py").is_file() else None


@cache
def java_problem() -> str | None:
    """None when a working `java` is on PATH, else why not."""
    exe = shutil.which("java")
    if exe is None:
        return "no `java` on PATH (METEOR and SPICE are Java tools; install a JRE)"
    try:
        subprocess.run([exe, "-version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        return f"`java -version` failed: {e}"
    return None


def python_ptb_tokenize(caption: str) -> str:
    """Lowercased PTB-like tokens without punctuation (fallback when Java is missing)."""
    tokens = _PY_TOKEN.findall(caption.lower())
    # PTB turns brackets into -LRB-/-RRB- and quotes into ``/'', which the wrapper drops.
    return " ".join(t for t in tokens if t not in PTB_PUNCTUATION and t not in _PY_DROPPED)


def ptb_tokenize(captions: Sequence[str], use_java: bool = True) -> tuple[list[str], str]:
    """(tokenized captions, tokenizer name): Stanford PTBTokenizer when possible."""
    lines = [" ".join(c.split()) for c in captions]
    pkg = _pycoco_dir()
    jar = pkg / "tokenizer" / "stanford-corenlp-3.4.1.jar" if pkg else None
    if use_java and jar is not None and jar.is_file() and java_problem() is None:
        proc = subprocess.run(
            [
                "java",
                "-cp",
                str(jar),
                "edu.stanford.nlp.process.PTBTokenizer",
                "-preserveLines",
                "-lowerCase",
            ],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = proc.stdout.split("\n")
        if proc.returncode == 0 and len(out) >= len(lines):
            return (
                [
                    " ".join(t for t in line.split() if t not in PTB_PUNCTUATION)
                    for line in out[: len(lines)]
                ],
                "ptb-stanford-corenlp-3.4.1",
            )
    return [python_ptb_tokenize(c) for c in lines], "ptb-python-approximation"


def _spice_problem(pkg: Path) -> str | None:
    lib = pkg / "spice" / "lib"
    missing = [
        n
        for n in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
        if not (lib / n).is_file()
    ]
    if missing:
        return (
            f"SPICE needs {', '.join(missing)} in {lib} (pycocoevalcap's "
            "get_stanford_models() fetches them from nlp.stanford.edu; speechkit never does)"
        )
    return None


def caption_metrics(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    use_java: bool | None = None,
) -> dict[str, Any]:
    """Corpus captioning metrics; `use_java=False` skips METEOR/SPICE and Java tokenization."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    if any(len(r) == 0 for r in references):
        raise ValueError("every candidate needs at least one reference caption")
    out: dict[str, Any] = {"items": len(candidates), "ran": [], "not_run": {}}
    pkg = _pycoco_dir()
    all_names = ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d", "meteor", "spice",
                 "spider"]
    if pkg is None:
        out["not_run"] = {m: f"pycocoevalcap is not installed ({INSTALL_HINT})" for m in all_names}
        return out
    if not candidates:
        out["not_run"] = {m: "no items to score" for m in all_names}
        return out

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    java_ok = use_java is not False and java_problem() is None
    flat = list(candidates) + [r for refs in references for r in refs]
    tokens, out["tokenizer"] = ptb_tokenize(flat, use_java=java_ok)
    res, gts, k = {}, {}, len(candidates)
    for i, refs in enumerate(references):
        res[i] = [tokens[i]]
        gts[i] = tokens[k : k + len(refs)]
        k += len(refs)

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, value in enumerate(bleu, 1):
        out[f"bleu_{n}"] = float(value)
    out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    out["cider_d"] = float(Cider().compute_score(gts, res)[0])
    out["ran"] += ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"]

    if not java_ok:
        reason = "skipped by request" if use_java is False else java_problem()
        out["not_run"].update(
            {"meteor": reason, "spice": reason, "spider": f"needs SPICE: {reason}"}
        )
        return out
    _java_metrics(gts, res, pkg, out)
    return out


def _java_metrics(gts: dict[int, list[str]], res: dict[int, list[str]], pkg: Path | None,
                  out: dict[str, Any]) -> None:
    """METEOR, SPICE and SPIDEr (the Java tools) into `out`; a failure is named, not scored."""
    try:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
        out["meteor"] = float(meteor.compute_score(gts, res)[0])
        out["ran"].append("meteor")
        del meteor
    except Exception as e:  # the Java tool failed: say so instead of reporting a number
        out["not_run"]["meteor"] = f"METEOR 1.5 failed: {type(e).__name__}: {e}"
    problem = _spice_problem(pkg)
    if problem is None:
        try:
            from pycocoevalcap.spice.spice import Spice

            out["spice"] = float(Spice().compute_score(gts, res)[0])
            out["ran"].append("spice")
        except Exception as e:
            problem = f"SPICE failed: {type(e).__name__}: {e}"
    if problem is None:
        out["spider"] = (out["cider_d"] + out["spice"]) / 2.0
        out["ran"].append("spider")
    else:
        out["not_run"].update({"spice": problem, "spider": f"needs SPICE: {problem}"})

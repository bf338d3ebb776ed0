"""Multiple-choice spoken QA suites in MMAU's published layout.

MMAU (Sakshi et al., 2024) ships its questions as one JSON list (`mmau-test-mini.json`), each
entry with `id`, `audio_id` (a path relative to the data root, e.g.
`./test-mini-audios/<id>.wav`), `question`, `choices` (the option texts) and `answer` (the text
of the right option). `sqa-mini` is the same layout over pocketsphinx recordings, with its
questions shipped in speechkit (manifests/sqa-mini/questions.json), so it runs offline.

Each item's prompt is the question, its options lettered (A), (B), ..., and one line asking for
the letter; the answer is read by speechkit.evaluation.metrics.sqa, which never guesses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechkit.data import Item, read_json_object
from speechkit.errors import SpeechkitError
from speechkit.evaluation.metrics.sqa import LETTERS
from speechkit.evaluation.suites import Built, Suite, manifests_dir, register_builder

MC_INSTRUCTION = "Answer with the letter of the correct option."


def mc_prompt(question: str, choices: list[str]) -> str:
    """The question, each option on its own line as "(A) text", then the instruction."""
    options = [f"({LETTERS[i]}) {c}" for i, c in enumerate(choices)]
    return "\n".join([question.strip(), *options, MC_INSTRUCTION])


def _questions(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> list[Any]:
    if opts.get("packaged_questions"):
        path = manifests_dir() / opts["packaged_questions"]
    else:
        path = root / opts.get("questions", "mmau-test-mini.json")
    if not path.is_file():
        raise SpeechkitError(f"{suite.name}/{split}: no {path.name} in {path.parent}. Expected "
                             f"layout: {suite.layout}")
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpeechkitError(f"{path}: not a JSON list of questions ({e})") from None
    if isinstance(data, dict):  # a file of one object with the list under "data"
        data = read_json_object(path, "questions file").get("data")
    if not isinstance(data, list):
        raise SpeechkitError(f"{path}: expected a JSON list of questions (MMAU layout)")
    return data


@register_builder("mmau")
def mmau(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """MMAU-layout questions: id, audio_id, question, choices, answer (an option's text)."""
    items, missing, skipped = [], [], {}
    for q in _questions(suite, root, split, opts):
        choices = q.get("choices") if isinstance(q, dict) else None
        if not (isinstance(choices, list) and choices and all(isinstance(c, str) for c in choices)
                and isinstance(q.get("question"), str) and isinstance(q.get("audio_id"), str)
                and q.get("answer") in choices and len(choices) <= len(LETTERS)):
            why = "entry without question, audio_id, text choices and an answer among them"
            skipped[why] = skipped.get(why, 0) + 1
            continue
        audio = root / q["audio_id"].removeprefix("./")
        if not audio.is_file():
            missing.append(str(audio))
            continue
        items.append(Item(id=str(q.get("id") or Path(q["audio_id"]).stem), path=str(audio),
                          reference=q["answer"], choices=list(choices),
                          prompt=mc_prompt(q["question"], choices),
                          meta={k: q[k] for k in ("task", "category", "sub-category", "difficulty",
                                                  "dataset") if k in q}))
    return items, missing, skipped

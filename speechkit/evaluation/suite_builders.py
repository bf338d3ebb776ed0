"""Builders that walk each dataset's standard layout on disk into speechkit Items.

Each builder returns (items, missing media paths, {skip reason: count}). An item whose
media file is absent is left out of the items and named in the missing list; an item the
protocol excludes (IEMOCAP's other emotions) is counted under its reason. A root without
the dataset's index files (transcripts, trial list, csv) is a SpeechkitError that names
the expected layout.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from speechkit.data import Item
from speechkit.errors import SpeechkitError
from speechkit.evaluation.suites import Built, Suite, register_builder
from speechkit.inputs import read_manifest
from speechkit.languages import language_name

# IEMOCAP 4-class protocol: excited is merged into happy.
IEMOCAP_LABELS = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
_SPHINX_LINE = re.compile(r"^<s>(.*)</s>\s*\(([^)]+)\)\s*$")


def _first(*paths: Path | None, want_dir: bool = False) -> Path | None:
    for p in paths:
        if p is not None and (p.is_dir() if want_dir else p.is_file()):
            return p
    return None


def _layout_error(suite: Suite, split: str, what: str) -> SpeechkitError:
    return SpeechkitError(f"{suite.name}/{split}: {what}. Expected layout: {suite.layout}")


@register_builder("librispeech")
def librispeech(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """LibriSpeech: <split>/<spk>/<chapter>/*.flac with <spk>-<chapter>.trans.txt."""
    base = _first(
        root / split,
        root / "LibriSpeech" / split,
        root if root.name == split else None,
        want_dir=True,
    )
    if base is None:
        raise _layout_error(suite, split, f"no {split}/ folder in {root}")
    items, missing = [], []
    for trans in sorted(base.glob("*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt, _, words = line.strip().partition(" ")
            if not utt:
                continue
            audio = trans.parent / f"{utt}.flac"
            if audio.is_file():
                items.append(
                    Item(
                        id=utt,
                        path=str(audio),
                        reference=words,
                        meta={"speaker": utt.split("-")[0]},
                    )
                )
            else:
                missing.append(str(audio))
    return items, missing, {}


@register_builder("lrs3")
def lrs3(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """LRS3: <split>/<speaker>/<utt>.mp4 with <utt>.txt whose first line is 'Text:  ...'."""
    base = _first(root / split, root if root.name == split else None, want_dir=True)
    if base is None:
        raise _layout_error(suite, split, f"no {split}/ folder in {root}")
    items, missing, skipped = [], [], Counter()
    for txt in sorted(base.glob("*/*.txt")):
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        text = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Text:")), None)
        if text is None:
            skipped[f"no 'Text:' line in the .txt file (e.g. {txt})"] += 1
            continue
        media = txt.with_suffix(".mp4")
        if media.is_file():
            items.append(
                Item(
                    id=f"{txt.parent.name}/{txt.stem}",
                    path=str(media),
                    reference=text,
                    meta={"speaker": txt.parent.name},
                )
            )
        else:
            missing.append(str(media))
    return items, missing, dict(skipped)


@register_builder("voxceleb1")
def voxceleb1(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """VoxCeleb1 trials: '1 enroll.wav test.wav' lines; audio under wav/ (or the root)."""
    name = opts.get("trial_list", "veri_test2.txt")
    trial_file = _first(root / name, root / "meta" / name, root / "lists" / name)
    if trial_file is None:
        raise _layout_error(
            suite, split, f"trial list {name} not in {root}, {root}/meta or {root}/lists"
        )
    trials, skipped = [], Counter()
    for line in trial_file.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("0", "1"):
            trials.append((int(parts[0]), parts[1], parts[2]))
        elif parts:
            skipped["malformed trial line (want 'LABEL ENROLL TEST')"] += 1
    if not trials:
        raise _layout_error(suite, split, f"{trial_file} has no trials")
    probe = trials[0][1]
    wav_root = _first(
        *(
            d
            for d in (root / "wav", root / "vox1_test_wav" / "wav", root / "test" / "wav", root)
            if (d / probe).is_file()
        ),
        want_dir=True,
    ) or (root / "wav" if (root / "wav").is_dir() else root)
    exists: dict[str, bool] = {}
    items, missing = [], []
    for label, enroll, test in trials:
        ok = True
        for rel in (enroll, test):
            if rel not in exists:
                exists[rel] = (wav_root / rel).is_file()
                if not exists[rel]:
                    missing.append(str(wav_root / rel))
            ok &= exists[rel]
        if ok:
            items.append(
                Item(
                    id=f"{enroll}|{test}",
                    path=str(wav_root / test),
                    reference="yes" if label else "no",
                    label=label,
                    enroll=str(wav_root / enroll),
                )
            )
        else:
            skipped["trial with a missing wav (its files are in the missing list)"] += 1
    return items, missing, dict(skipped)


@register_builder("iemocap")
def iemocap(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """IEMOCAP: Session<N>/dialog/EmoEvaluation/*.txt and Session<N>/sentences/wav/."""
    session = root / f"Session{int(opts.get('session', 5))}"
    evals = sorted(
        p
        for p in (session / "dialog" / "EmoEvaluation").glob("*.txt")
        if not p.name.startswith("._")
    )
    if not evals:
        raise _layout_error(suite, split, f"no {session.name}/dialog/EmoEvaluation/*.txt in {root}")
    items, missing, skipped = [], [], Counter()
    for ev in evals:
        for line in ev.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if not line.startswith("[") or len(parts) < 3:
                continue
            utt, emo = parts[1].strip(), parts[2].strip()
            label = IEMOCAP_LABELS.get(emo)
            if label is None:
                skipped[f"emotion '{emo}' is outside the 4-class protocol"] += 1
                continue
            wav = session / "sentences" / "wav" / utt.rsplit("_", 1)[0] / f"{utt}.wav"
            if wav.is_file():
                items.append(
                    Item(
                        id=utt,
                        path=str(wav),
                        reference=label,
                        label=label,
                        meta={"raw_label": emo},
                    )
                )
            else:
                missing.append(str(wav))
    return items, missing, dict(skipped)


@register_builder("covost2")
def covost2(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """CoVoST 2: covost_v2.<src>_<tgt>.<partition>.tsv plus Common Voice <src>/clips/."""
    src, tgt = opts.get("source_language"), opts.get("target_language")
    if not src or not tgt:
        raise SpeechkitError(
            f"{suite.name}/{split}: the split needs source_language and target_language"
        )
    name = f"covost_v2.{src}_{tgt}.{opts.get('partition', 'test')}.tsv"
    tsv = _first(root / name, root / src / name, root / "covost" / name)
    if tsv is None:
        raise _layout_error(suite, split, f"{name} not in {root}, {root}/{src} or {root}/covost")
    clips = _first(root / src / "clips", root / "clips", want_dir=True) or root / src / "clips"
    prompt = (suite.prompt or "").format(target_language_name=language_name(tgt))
    items, missing = [], []
    with open(tsv, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        if not {"path", "translation"} <= set(reader.fieldnames or []):
            raise _layout_error(suite, split, f"{tsv} lacks the path/translation columns")
        for row in reader:
            audio = clips / row["path"]
            if audio.is_file():
                items.append(
                    Item(
                        id=Path(row["path"]).stem,
                        path=str(audio),
                        reference=row["translation"],
                        language=src,
                        prompt=prompt,
                        target_language=tgt,
                        meta={"transcript": row.get("sentence")},
                    )
                )
            else:
                missing.append(str(audio))
    return items, missing, {}


def _listing(d: Path) -> set[str]:
    return set(os.listdir(d)) if d.is_dir() else set()


@register_builder("audiocaps")
def audiocaps(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """AudioCaps: <split>.csv (audiocap_id,youtube_id,start_time,caption) plus the clips."""
    name = opts.get("csv", f"{split}.csv")
    table = _first(root / name, root / "dataset" / name, root / "data" / name)
    if table is None:
        raise _layout_error(suite, split, f"{name} not in {root}, {root}/dataset or {root}/data")
    clips: dict[tuple[str, str], dict[str, list[str]]] = {}
    with open(table, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            key = (row["youtube_id"], str(int(float(row["start_time"]))))
            entry = clips.setdefault(key, {"ids": [], "captions": []})
            entry["ids"].append(row["audiocap_id"])
            entry["captions"].append(row["caption"].strip())
    dirs = [d for d in (root / split, root / "audio" / split, root / "audio", root) if d.is_dir()]
    listings = [(d, _listing(d)) for d in dirs]
    items, missing = [], []
    for (yt, start), entry in clips.items():
        stems = [f"{yt}_{start}", f"{yt}_{start}.000", f"Y{yt}", yt, *entry["ids"]]
        found = next(
            (
                d / f"{s}{ext}"
                for d, names in listings
                for s in stems
                for ext in (".wav", ".flac")
                if f"{s}{ext}" in names
            ),
            None,
        )
        if found is None:
            missing.append(f"{yt}_{start}.wav (youtube_id {yt}, start {start})")
            continue
        items.append(
            Item(
                id=f"{yt}_{start}",
                path=str(found),
                reference=entry["captions"][0],
                references=entry["captions"],
                meta={"youtube_id": yt},
            )
        )
    return items, missing, {}


@register_builder("clotho")
def clotho(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """Clotho: clotho_captions_<split>.csv (file_name, caption_1..5) plus <split>/ clips."""
    name = opts.get("csv", f"clotho_captions_{split}.csv")
    table = _first(root / name, root / "csv" / name)
    if table is None:
        raise _layout_error(suite, split, f"{name} not in {root} or {root}/csv")
    audio = _first(
        root / opts.get("audio_dir", split), root / "audio" / split, want_dir=True
    ) or root / opts.get("audio_dir", split)
    items, missing = [], []
    with open(table, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            caps = [row[k].strip() for k in sorted(row) if k.startswith("caption") and row[k]]
            wav = audio / row["file_name"]
            if wav.is_file():
                items.append(
                    Item(
                        id=row["file_name"],
                        path=str(wav),
                        reference=caps[0],
                        references=caps,
                    )
                )
            else:
                missing.append(str(wav))
    return items, missing, {}


@register_builder("librivox-mini")
def librivox_mini(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """pocketsphinx-testdata: librivox/ and cards/ wavs with '<s> words </s> (id)' lines."""
    deb_root = root / "usr" / "share" / "pocketsphinx" / "test" / "data"
    base = deb_root if deb_root.is_dir() else root
    index = {"librivox": "transcription", "cards": "cards.transcription"}
    items, missing, found_index = [], [], False
    for subset in opts.get("subsets", list(index)):
        trans = base / subset / index[subset]
        if not trans.is_file():
            missing.append(str(trans))
            continue
        found_index = True
        for line in trans.read_text(encoding="utf-8").splitlines():
            m = _SPHINX_LINE.match(line.strip())
            if not m:
                continue
            utt, words = m.group(2).strip(), " ".join(m.group(1).split())
            wav = base / subset / f"{utt}.wav"
            if wav.is_file():
                items.append(
                    Item(
                        id=f"{subset}/{utt}",
                        path=str(wav),
                        reference=words,
                        language="en",
                        meta={"subset": subset},
                    )
                )
            else:
                missing.append(str(wav))
    if not found_index:
        raise _layout_error(
            suite, split, f"no librivox/transcription or cards/cards.transcription under {base}"
        )
    return items, missing, {}


@register_builder("manifest")
def manifest(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """A user suite whose split names a JSONL manifest (relative to the data root)."""
    rel = opts.get("manifest")
    path = root / rel if rel else None
    if path is None or not path.is_file():
        raise _layout_error(suite, split, f"manifest {rel!r} not found under {root}")
    items, missing, skipped = [], [], Counter()
    for it in read_manifest(path):
        if it.error:
            items.append(it)  # runs as an error line: counted as failed, never dropped
        elif not Path(it.path).is_file():
            missing.append(it.path)
        else:
            items.append(it)
    return items, missing, dict(skipped)

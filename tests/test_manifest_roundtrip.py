"""Every suite builder's items survive `speechkit manifest` and reading back: field by field,
scored the same, and `bench` runs from the written manifest."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from speechkit.data import Item, Result, dumps_line
from speechkit.evaluation.scoring import score_predictions
from speechkit.evaluation.suites import build_items, load_suite
from speechkit.inputs import read_manifest


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _librispeech(root: Path) -> str:
    chapter = root / "test-clean" / "1089" / "134686"
    _touch(chapter / "1089-134686.trans.txt", "1089-134686-0000 HE HOPED\n1089-134686-0001 STUFF IT\n")
    _touch(chapter / "1089-134686-0000.flac")
    _touch(chapter / "1089-134686-0001.flac")
    return "test-clean"


def _lrs3(root: Path) -> str:
    _touch(root / "test" / "0Fi83BHQsMA" / "00002.txt", "Text:  WHEN IT'S DONE\nConf:  3\n")
    _touch(root / "test" / "0Fi83BHQsMA" / "00002.mp4")
    return "test"


def _voxceleb(root: Path) -> str:
    _touch(root / "veri_test2.txt", "1 id1/a/1.wav id1/b/2.wav\n0 id1/a/1.wav id2/c/3.wav\n")
    for rel in ("id1/a/1.wav", "id1/b/2.wav", "id2/c/3.wav"):
        _touch(root / "wav" / rel)
    return "cleaned"


def _iemocap(root: Path) -> str:
    s5 = root / "Session5"
    _touch(s5 / "dialog" / "EmoEvaluation" / "Ses05F_impro01.txt",
           "[6.29 - 8.23]\tSes05F_impro01_F000\texc\t[2.5, 3.5, 3.0]\n"
           "[9.00 - 10.0]\tSes05F_impro01_M001\tang\t[2.0, 3.0, 3.0]\n")
    for utt in ("Ses05F_impro01_F000", "Ses05F_impro01_M001"):
        _touch(s5 / "sentences" / "wav" / "Ses05F_impro01" / f"{utt}.wav")
    return "session5"


def _covost2(root: Path) -> str:
    _touch(root / "covost_v2.en_de.test.tsv",
           "path\tsentence\ttranslation\tclient_id\nclip1.mp3\tHello.\tHallo.\tx\n"
           "clip2.mp3\tThank you.\tDanke.\ty\n")
    _touch(root / "en" / "clips" / "clip1.mp3")
    _touch(root / "en" / "clips" / "clip2.mp3")
    return "en-de"


def _audiocaps(root: Path) -> str:
    _touch(root / "test.csv", "audiocap_id,youtube_id,start_time,caption\n"
           "1,abc,30,A dog barks\n2,abc,30,Dogs bark loudly\n3,def,0,Rain falls on a roof\n"
           "4,def,0,It rains\n")
    _touch(root / "test" / "abc_30.wav")
    _touch(root / "test" / "def_0.wav")
    return "test"


def _clotho(root: Path) -> str:
    _touch(root / "clotho_captions_evaluation.csv",
           "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
           "rain.wav,Rain falls,Rain on a roof,It rains,Water drops,A storm\n"
           "dog.wav,A dog barks,Dogs bark,Barking,A dog is barking,A loud dog\n")
    _touch(root / "evaluation" / "rain.wav")
    _touch(root / "evaluation" / "dog.wav")
    return "evaluation"


def _librivox_mini(root: Path) -> str:
    _touch(root / "librivox" / "transcription", "<s> hello world </s> (a)\n<s> good day </s> (b)\n")
    _touch(root / "librivox" / "a.wav")
    _touch(root / "librivox" / "b.wav")
    _touch(root / "cards" / "cards.transcription", "<s> ace </s> (c1)\n")
    _touch(root / "cards" / "c1.wav")
    return "test"


def _user_manifest(root: Path) -> str:
    _touch(root / "clips" / "one.wav")
    _touch(root / "clips" / "two.wav")
    _touch(root / "items.jsonl", "\n".join(json.dumps(d) for d in (
        {"id": "one", "path": "clips/one.wav", "reference": "hello there", "speaker": "s1"},
        {"audio_filepath": "clips/two.wav", "text": "good day", "duration": 1.5},
    )) + "\n")
    return "test"


LAYOUTS = {"librispeech": _librispeech, "lrs3": _lrs3, "voxceleb1-o": _voxceleb,
           "iemocap": _iemocap, "covost2": _covost2, "audiocaps": _audiocaps, "clotho": _clotho,
           "librivox-mini": _librivox_mini, "manifest": _user_manifest}


def _suite(name: str, tmp_path: Path) -> str:
    if name != "manifest":
        return name
    suite = {"name": "mine", "task": "asr", "metrics": ["wer"], "builder": "manifest",
             "layout": "DATA_ROOT/items.jsonl", "splits": {"test": {"manifest": "items.jsonl"}}}
    return str(_touch(tmp_path / "mine.json", json.dumps(suite)))


def _written(name: str, tmp_path: Path, monkeypatch, cli) -> tuple[str, str, list[Item], Path]:
    """The tree under ./data (a relative --data-root), its manifest written by the CLI."""
    monkeypatch.chdir(tmp_path)
    split = LAYOUTS[name](tmp_path / "data")
    suite = _suite(name, tmp_path)
    out = tmp_path / "lists" / "m.jsonl"
    r = cli("manifest", suite, "--data-root", "data", "--split", split, "--out", "lists/m.jsonl")
    assert r.exit_code in (0, 1), r.output  # 1: fewer items than the full protocol
    built, _ = build_items(load_suite(suite), tmp_path / "data", split)
    return suite, split, built, out


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_written_manifest_reads_back_into_the_same_items(name, tmp_path, monkeypatch, cli):
    _, _, built, out = _written(name, tmp_path, monkeypatch, cli)
    read = read_manifest(out)
    assert built and [asdict(it) for it in read] == [asdict(it) for it in built]
    for it in read:
        assert Path(it.path).is_file() and (it.enroll is None or Path(it.enroll).is_file())
        assert not any(key in it.meta for key in ("meta", "enroll_path", "references", "label"))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(not Path(line["path"]).is_absolute() for line in lines)  # relative to lists/


def _prediction(it: Item) -> str:
    """A fixed, imperfect answer: the last reference (a caption other than the first)."""
    if it.label is not None and it.task == "sv":
        return "yes"
    return (it.references or [it.reference or ""])[-1]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_written_manifest_scores_like_the_built_items(name, tmp_path, monkeypatch, cli):
    suite, _, built, out = _written(name, tmp_path, monkeypatch, cli)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(dumps_line(Result(id=it.id, path=it.path, text=_prediction(it)).to_dict())
                             for it in built))
    s = load_suite(suite)
    kw = {"suite": s, "labels": s.labels, "use_java": False,
          "target_language": next(iter(s.splits.values())).get("target_language")}
    from_manifest = score_predictions(preds, expected=out, **kw)
    from_items = score_predictions(preds, expected=built, **kw)
    assert from_manifest["counts"]["scored"] == len(built)
    assert from_manifest["metrics"] == from_items["metrics"]


def test_captions_are_scored_against_all_five_references(tmp_path, monkeypatch, cli):
    _, _, built, out = _written("clotho", tmp_path, monkeypatch, cli)
    assert [len(it.references) for it in read_manifest(out)] == [5, 5]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(dumps_line({"id": it.id, "text": it.references[-1]}) for it in built))
    summary = score_predictions(preds, task="aac", expected=out, use_java=False)
    assert summary["metrics"]["bleu_1"] > 0.99  # each answer is one of its clip's references


@pytest.mark.slow
def test_bench_from_a_written_voxceleb_manifest_gives_the_suite_figures(testdata, tmp_path,
                                                                          monkeypatch, cli):
    from speechkit.evaluation.bench import run_bench
    from tests.test_verification import voxceleb_layout

    monkeypatch.chdir(tmp_path)
    voxceleb_layout(tmp_path / "vox", testdata)
    r = cli("manifest", "voxceleb1-o", "--data-root", "vox", "--out", "lists/vox.jsonl")
    assert r.exit_code == 1, r.output  # a few trials, not the protocol's 37611
    from_suite = run_bench("voxceleb1-o", "resemblyzer", data_root="vox", out_dir="a",
                           progress=False).summary
    from_manifest = run_bench("lists/vox.jsonl", "resemblyzer", task="sv", out_dir="b",
                              progress=False).summary
    assert from_manifest["counts"]["scored"] == from_suite["counts"]["scored"] > 0
    assert from_manifest["metrics"] == from_suite["metrics"]


@pytest.mark.slow
def test_bench_from_a_written_librivox_manifest_gives_the_suite_figures(testdata, whisper_base,
                                                                          tmp_path, monkeypatch,
                                                                          cli):
    from speechkit.evaluation.bench import run_bench

    monkeypatch.chdir(tmp_path)
    r = cli("manifest", "librivox-mini", "--data-root", testdata, "--out", "m.jsonl")
    assert r.exit_code == 0, r.output
    items = read_manifest(tmp_path / "m.jsonl")
    keep = tmp_path / "three.jsonl"  # three clips keep the test short
    first = sorted(items, key=lambda it: it.id)[:3]  # what --limit 3 takes
    keep.write_text("".join(dumps_line(it.to_dict(tmp_path)) for it in first))
    from_manifest = run_bench(keep, whisper_base, out_dir="b", progress=False).summary
    from_suite = run_bench("librivox-mini", whisper_base, data_root=testdata, limit=3,
                           out_dir="a", progress=False).summary
    assert from_manifest["counts"]["scored"] == 3
    assert from_manifest["metrics"] == from_suite["metrics"]

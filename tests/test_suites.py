"""Suite definitions and the builders that turn dataset layouts into manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechkit.errors import SpeechkitError
from speechkit.evaluation.suites import (
    build_items,
    build_manifest,
    load_suite,
    manifests_dir,
    resolve_data_root,
    suite_names,
)
from speechkit.inputs import read_manifest

BUILT_IN = [
    "audiocaps",
    "clotho",
    "covost2",
    "iemocap",
    "librispeech",
    "librivox-mini",
    "lrs3",
    "voxceleb1-o",
]


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- definitions ------------------------------------------------------------------------------


def test_every_built_in_suite_loads_with_counts_and_sourced_published_rows():
    assert set(BUILT_IN) <= set(suite_names())
    assert (manifests_dir() / "lrs3.json").is_file()
    for name in BUILT_IN:
        s = load_suite(name)
        assert s.name == name and s.metrics and s.layout and s.prompt
        assert all(isinstance(v.get("expected_items"), int) for v in s.splits.values())
        assert all(row["source"] and row["value"] is not None for row in s.published)


def test_protocol_facts_in_the_suites():
    lrs3 = load_suite("lrs3")
    assert lrs3.splits["test"]["expected_items"] == 1321 and lrs3.normalizer == "lrs3"
    assert set(lrs3.modalities) == {"audio", "video", "audiovisual"}
    rows = {(r["modality"], r["value"]) for r in lrs3.published_rows("test")}
    assert {("audio", 0.79), ("audiovisual", 0.77), ("audio", 1.0)} <= rows
    ls = load_suite("librispeech")
    assert ls.splits["test-clean"]["expected_items"] == 2620
    assert ls.splits["test-other"]["expected_items"] == 2939 and ls.normalizer == "whisper-en"
    vox = load_suite("voxceleb1-o")
    assert vox.splits["cleaned"]["expected_items"] == 37611
    assert vox.splits["original"]["expected_items"] == 37720


def test_unknown_suite_names_the_built_in_ones():
    with pytest.raises(SpeechkitError, match="librispeech"):
        load_suite("no-such-suite")


def test_a_users_suite_file_loads_and_is_validated(tmp_path):
    d = {
        "name": "mine",
        "task": "transcribe",
        "metrics": ["wer"],
        "builder": "manifest",
        "layout": "DATA_ROOT/items.jsonl",
        "splits": {"test": {"manifest": "items.jsonl"}},
    }
    p = _touch(tmp_path / "mine.json", json.dumps(d))
    s = load_suite(p)
    assert s.task == "asr" and s.default_split == "test"
    for bad, msg in (
        (d | {"normalizer": "fancy"}, "normalizer"),
        (d | {"builder": "magic"}, "builder"),
        ({k: v for k, v in d.items() if k != "splits"}, "splits"),
        (d | {"published": [{"system": "x", "value": 1}]}, "source"),
    ):
        _touch(p, json.dumps(bad))
        with pytest.raises(SpeechkitError, match=msg):
            load_suite(p)


# --- builders on fake layouts -----------------------------------------------------------------


def _fake_librispeech(root: Path, missing_one: bool = False) -> None:
    chapter = root / "test-clean" / "1089" / "134686"
    _touch(
        chapter / "1089-134686.trans.txt",
        "1089-134686-0000 HE HOPED THERE WOULD BE STEW\n1089-134686-0001 STUFF IT INTO YOU\n",
    )
    _touch(chapter / "1089-134686-0000.flac")
    if not missing_one:
        _touch(chapter / "1089-134686-0001.flac")


def test_librispeech_layout_builds_items_and_warns_on_the_count(tmp_path):
    _fake_librispeech(tmp_path)
    items, report = build_items(load_suite("librispeech"), tmp_path, "test-clean")
    assert [i.id for i in items] == ["1089-134686-0000", "1089-134686-0001"]
    assert items[0].reference == "HE HOPED THERE WOULD BE STEW" and items[0].task == "asr"
    assert report.found == 2 and report.expected == 2620 and not report.complete
    assert any("2620" in w for w in report.warnings)


def test_half_filled_root_writes_the_missing_list(tmp_path):
    _fake_librispeech(tmp_path / "data", missing_one=True)
    out = tmp_path / "m.jsonl"
    report = build_manifest("librispeech", tmp_path / "data", "test-clean", out)
    assert len(read_manifest(out)) == 1 and len(report.missing) == 1
    listed = (tmp_path / "m.jsonl.missing.txt").read_text().split()
    assert listed == [report.missing[0]] and listed[0].endswith("1089-134686-0001.flac")
    assert any("no media file" in w for w in report.warnings)


def test_missing_data_root_names_the_suite_and_layout(tmp_path):
    with pytest.raises(SpeechkitError, match=r"librispeech.*does not exist.*trans\.txt"):
        build_items(load_suite("librispeech"), tmp_path / "nope", "test-clean")
    with pytest.raises(SpeechkitError, match=r"librispeech/test-other: no test-other/ folder"):
        build_items(load_suite("librispeech"), tmp_path, "test-other")


def test_unknown_split_lists_the_splits():
    with pytest.raises(SpeechkitError, match="test-clean, test-other"):
        load_suite("librispeech").split("dev")


def test_lrs3_layout(tmp_path):
    spk = tmp_path / "test" / "0Fi83BHQsMA"
    _touch(spk / "00002.txt", "Text:  WHEN IT'S DONE\nConf:  3\n\nWORD START END ASDSCORE\n")
    _touch(spk / "00002.mp4")
    _touch(spk / "00004.txt", "Text:  NO VIDEO HERE\n")
    items, report = build_items(load_suite("lrs3"), tmp_path, "test")
    assert [(i.id, i.reference) for i in items] == [("0Fi83BHQsMA/00002", "WHEN IT'S DONE")]
    assert report.missing[0].endswith("00004.mp4")


def test_voxceleb_trials_carry_enroll_recording_and_label(tmp_path):
    _touch(
        tmp_path / "veri_test2.txt",
        "1 id10270/a/00001.wav id10270/b/00002.wav\n0 id10270/a/00001.wav id10309/c/00003.wav\n",
    )
    for rel in ("id10270/a/00001.wav", "id10270/b/00002.wav"):
        _touch(tmp_path / "wav" / rel)
    items, report = build_items(load_suite("voxceleb1-o"), tmp_path, "cleaned")
    assert len(items) == 1 and items[0].label == 1 and items[0].reference == "yes"
    assert items[0].enroll.endswith("id10270/a/00001.wav")
    assert items[0].path.endswith("id10270/b/00002.wav")
    assert report.missing == [str(tmp_path / "wav" / "id10309/c/00003.wav")]
    assert sum(report.skipped.values()) == 1


def test_iemocap_maps_excited_to_happy_and_counts_other_emotions(tmp_path):
    s5 = tmp_path / "Session5"
    _touch(
        s5 / "dialog" / "EmoEvaluation" / "Ses05F_impro01.txt",
        "% header\n[6.2901 - 8.2357]\tSes05F_impro01_F000\texc\t[2.5, 3.5, 3.0]\n"
        "C-E1:\tExcited;\t()\n"
        "[9.0 - 10.0]\tSes05F_impro01_M001\tfru\t[2.0, 3.0, 3.0]\n",
    )
    _touch(s5 / "sentences" / "wav" / "Ses05F_impro01" / "Ses05F_impro01_F000.wav")
    items, report = build_items(load_suite("iemocap"), tmp_path, "session5")
    assert [(i.id, i.reference, i.meta["raw_label"]) for i in items] == [
        ("Ses05F_impro01_F000", "happy", "exc")
    ]
    assert list(report.skipped.values()) == [1] and "fru" in next(iter(report.skipped))


def test_covost2_audiocaps_and_clotho_layouts(tmp_path):
    _touch(
        tmp_path / "covost_v2.en_de.test.tsv",
        "path\tsentence\ttranslation\tclient_id\nclip1.mp3\tHello.\tHallo.\tx\n",
    )
    _touch(tmp_path / "en" / "clips" / "clip1.mp3")
    items, _ = build_items(load_suite("covost2"), tmp_path, "en-de")
    assert items[0].reference == "Hallo." and items[0].target_language == "de"
    assert items[0].prompt == "Listen to the speech and translate it into German."

    _touch(
        tmp_path / "test.csv",
        "audiocap_id,youtube_id,start_time,caption\n"
        "1,abc,30,A dog barks\n2,abc,30,Dogs bark loudly\n"
        "3,zzz,0,Rain falls\n",
    )
    _touch(tmp_path / "test" / "abc_30.wav")
    items, report = build_items(load_suite("audiocaps"), tmp_path, "test")
    assert items[0].references == ["A dog barks", "Dogs bark loudly"]
    assert len(report.missing) == 1 and "zzz" in report.missing[0]

    _touch(
        tmp_path / "clotho_captions_evaluation.csv",
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
        "rain.wav,Rain falls,Rain on a roof,It rains,Water drops,A storm\n",
    )
    _touch(tmp_path / "evaluation" / "rain.wav")
    items, _ = build_items(load_suite("clotho"), tmp_path, "evaluation")
    assert len(items[0].references) == 5


def test_root_without_the_index_files_is_an_error_with_the_layout(tmp_path):
    for name, split in (
        ("voxceleb1-o", "cleaned"),
        ("iemocap", "session5"),
        ("covost2", "en-de"),
        ("audiocaps", "test"),
        ("librivox-mini", "test"),
    ):
        with pytest.raises(SpeechkitError, match="Expected layout"):
            build_items(load_suite(name), tmp_path, split)


# --- the real pocketsphinx-testdata -----------------------------------------------------------


def test_librivox_mini_on_the_real_testdata(testdata, tmp_path):
    out = tmp_path / "librivox-mini.jsonl"
    report = build_manifest("librivox-mini", testdata, None, out)
    items = read_manifest(out)
    assert report.complete and report.found == 10 and len(items) == 10
    by_id = {i.id: i for i in items}
    assert by_id["librivox/sense_and_sensibility_01_austen_64kb-0880"].reference == (
        "he was not an ill disposed young man"
    )
    assert by_id["cards/001"].reference == "ten of clubs"
    assert all(Path(i.path).is_file() for i in items)
    sub, rep = build_items(load_suite("librivox-mini"), testdata, "cards")
    assert rep.found == 5 and all(i.id.startswith("cards/") for i in sub)


def test_librivox_mini_accepts_the_extracted_deb_root(testdata, tmp_path):
    deb_root = tmp_path / "deb"
    target = deb_root / "usr" / "share" / "pocketsphinx" / "test"
    target.mkdir(parents=True)
    (target / "data").symlink_to(testdata)
    items, report = build_items(load_suite("librivox-mini"), deb_root, "test")
    assert report.found == 10


def test_librivox_mini_finds_its_data_root_from_the_environment(testdata, monkeypatch):
    monkeypatch.setenv("SPEECHKIT_TESTDATA", str(testdata))
    assert resolve_data_root(load_suite("librivox-mini"), None) == testdata


# --- selection for bench runs -----------------------------------------------------------------


def test_suite_items_limit_then_shard_merge_back_to_the_limited_run(testdata):
    from speechkit.evaluation.suites import suite_items

    full, _ = suite_items("librivox-mini", testdata, "test")
    limited, rep = suite_items("librivox-mini", testdata, "test", limit=7)
    assert [i.id for i in limited] == [i.id for i in full[:7]]
    assert rep.selected == 7 and rep.found == 10 and rep.to_dict()["selection"] == "limit 7"
    shards = [
        suite_items("librivox-mini", testdata, "test", limit=7, shard=f"{k}/3")[0] for k in range(3)
    ]
    assert sorted(i.id for s in shards for i in s) == [i.id for i in limited]


@pytest.mark.parametrize("shard", ["3/3", "-1/2", "a/b", "1"])
def test_bad_shard_is_a_user_error(shard):
    from speechkit.evaluation.suites import parse_shard

    with pytest.raises(SpeechkitError, match="K/N"):
        parse_shard(shard)

"""Output files are named after their input, and each result line lists its own files."""

import json
import subprocess
import sys

from speechkit.formats import output_stems


def test_inputs_sharing_a_stem_keep_their_extension_in_the_file_name():
    stems = output_stems([("/r/long.mp3", "/r/long.mp3"), ("/r/long.m4a", "/r/long.m4a"),
                          ("/r/talk.wav", "/r/talk.wav")])
    assert stems == {"/r/long.mp3": "long.mp3", "/r/long.m4a": "long.m4a", "/r/talk.wav": "talk"}


def test_inputs_sharing_a_whole_name_get_a_hash():
    stems = output_stems([("/a/intro.wav", "/a/intro.wav"), ("/b/intro.wav", "/b/intro.wav"),
                          ("/b/intro.mp3", "/b/intro.mp3")])
    assert stems["/b/intro.mp3"] == "intro.mp3"
    assert stems["/a/intro.wav"] != stems["/b/intro.wav"]
    assert all(stems[k].startswith("intro.wav.") for k in ("/a/intro.wav", "/b/intro.wav"))


def test_each_result_line_names_the_files_written_for_it(testdata, make_media, tmp_path):
    clip = testdata / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"
    mp3 = make_media("long.mp3", "-i", str(clip))
    m4a = make_media("long.m4a", "-i", str(clip))
    out = tmp_path / "r.jsonl"
    res = subprocess.run([sys.executable, "-m", "speechkit", "transcribe", str(mp3), str(m4a),
                          "--out", str(out), "--output-format", "srt,txt", "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    for media in (mp3, m4a):
        outputs = lines[str(media)]["extras"]["outputs"]
        assert sorted(outputs) == [str(tmp_path / f"{media.name}.srt"), str(tmp_path / f"{media.name}.txt")]
        assert (tmp_path / f"{media.name}.txt").read_text().strip() == lines[str(media)]["text"]

"""`bench --check-batch-invariance`: items decoded again one at a time, differences named."""

import json

import pytest

from speechkit.data import read_results
from speechkit.evaluation.bench import run_bench
from speechkit.evaluation.compare import any_regressed, compare_scores
from speechkit.evaluation.invariance import sample_ids
from speechkit.threads import available_cores, cpu_model


def test_the_sample_is_seeded_and_ignores_the_order_ids_come_in():
    ids = [f"utt{i:02d}" for i in range(20)]
    first = sample_ids(ids, 5)
    assert first == sample_ids(list(reversed(ids)), 5) and len(first) == 5
    assert first == sorted(first) and sample_ids(ids, 5, seed=1) != first
    assert sample_ids(ids, 50) == ids


def _stored_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_batch_invariance_holds_for_whisper_and_finds_a_planted_difference(whisper_base, testdata,
                                                                           tmp_path):
    out = tmp_path / "run"
    kw = dict(data_root=testdata, limit=4, out_dir=out, progress=False, batch_size=4)
    clean = run_bench("librivox-mini", whisper_base, check_invariance=4, **kw).summary
    check = clean["batch_invariance"]
    assert check["checked"] == 4 and check["batch_size"] == 4
    assert check["differing"] == 0 and check["differences"] == [] and not check["failed"]
    saved = json.loads((out / "scores.json").read_text())
    assert saved["batch_invariance"]["checked"] == 4
    assert len(read_results(out / "batch-invariance.jsonl")) == 4
    # The speed rows name the machine they were measured on.
    machine = saved["run"]["speed"]["machine"]
    assert machine["cpu"] == cpu_model() and machine["cores"] == available_cores()
    rtfx = next(ln for ln in (out / "results.md").read_text().splitlines() if "| rtfx |" in ln)
    assert cpu_model() in rtfx and f"{available_cores()} cores" in rtfx
    # Plant a difference: one stored line no longer holds what the model writes for its clip.
    lines = _stored_lines(out / "predictions.jsonl")
    planted = lines[2]["id"]
    lines[2]["text"] = "a sentence the model never wrote"
    (out / "predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    dirty = run_bench("librivox-mini", whisper_base, check_invariance=4, **kw).summary
    check = dirty["batch_invariance"]
    assert check["differing"] == 1 and check["differences"][0]["id"] == planted
    assert check["differences"][0]["batched"] == "a sentence the model never wrote"
    assert any("batch invariance" in w and planted in w for w in dirty["warnings"])
    gate = compare_scores(clean, dirty, {"*": 100.0})
    row = next(r for r in gate if r["metric"] == "batch_invariance")
    assert row["regressed"] and planted in row["note"] and any_regressed(gate)
    assert not any_regressed(compare_scores(clean, clean))

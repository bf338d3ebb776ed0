"""The bench table in an 80-column CI log, the full citations in its files, no markup."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from speechkit.commands.tables import rich_table
from speechkit.evaluation.bench import BenchPlan, result_rows
from speechkit.evaluation.report import csv_table, markdown_table
from speechkit.evaluation.suites import BuildReport, load_suite
from speechkit.models.base import DecodeOptions

NOT_RUN = "no `java` on PATH (METEOR and SPICE are Java tools; install a JRE)"


def _rows(suite_name: str, split: str, modality: str | None, system: str) -> list[dict]:
    """Rows as `speechkit bench` builds them: this run, its speed, the published numbers."""
    suite = load_suite(suite_name)
    expected = suite.splits[split]["expected_items"]
    report = BuildReport(suite.name, split, "/data", expected, expected)
    plan = BenchPlan(suite, split, modality, suite.task, DecodeOptions(), [], report, None,
                     Path("."))
    metrics = {m: 12.3456 for m in suite.metrics if m not in ("meteor", "spice", "spider")}
    summary = {
        "metrics": metrics,
        "counts": {"scored": expected, "expected": expected},
        "normalizer": suite.normalizer,
        "details": {"not_run": {m: NOT_RUN for m in ("meteor", "spice", "spider")}},
        "run": {"speed": {"rtfx": 31.4, "peak_rss_mb": 1326.3, "peak_gpu_mb": 20480.5,
                          "machine": {"cpu": "AMD EPYC 7B13", "cores": 8, "threads": 4}}},
    }
    return result_rows(plan, summary, system)


def _render(rows: list[dict], title: str) -> list[str]:
    console = Console(width=80, file=io.StringIO(), record=True)
    console.print(rich_table(rows, title=title))
    return console.export_text().splitlines()


CASES = [
    ("librispeech", "test-clean", None),
    ("librispeech", "test-other", None),
    ("lrs3", "test", "audio"),
    ("lrs3", "test", "video"),
    ("lrs3", "test", "audiovisual"),
    ("audiocaps", "test", None),
]


@pytest.mark.parametrize(("suite", "split", "modality"), CASES)
def test_bench_table_fits_80_columns_with_every_row_whole(suite, split, modality):
    rows = _rows(suite, split, modality, system="whisper-base")
    lines = _render(rows, f"{suite}/{split}: whisper-base")
    assert max(len(line) for line in lines) <= 80
    text = " ".join(" ".join(lines).split())
    for r in rows:
        system = r.get("system_short") or r["system"]
        if str(r["source"]).startswith("not run"):
            assert f"not run: {NOT_RUN}" in text  # wrapped over lines, every word kept
            continue
        value = f"{r['value']:.2f}" if r["value"] >= 1 else f"{r['value']:.4g}"
        source = r.get("cite") or r["source"]
        # One line holds the row's system, metric, value and source tag: nothing cut or folded.
        assert any(system in ln and f" {r['metric']} " in ln and value in ln and source in ln
                   for ln in lines), (system, r["metric"], value, source)
    assert f"normalizer {load_suite(suite).normalizer}" in text or load_suite(suite).normalizer is None
    assert "machine AMD EPYC 7B13 (8 cores, 4 threads)" in text  # the CPU the RTFx was measured on


def test_published_rows_show_short_tags_and_keep_full_citations_in_the_files():
    rows = _rows("lrs3", "test", "audiovisual", system="whisper-base")
    lines = _render(rows, "lrs3/test (audiovisual): whisper-base")
    text = "\n".join(lines)
    assert "Llama-AVSR repo" in text and "Cappellazzo+25" in text and "Ma+23" in text
    assert "github.com" not in text and "arXiv" not in text
    md, csv = markdown_table(rows), csv_table(rows)
    for r in rows[3:]:
        assert r["source"] in md and r["system"] in md and r["source"] in csv
    assert "AVSR_Whisper-M_AVH-L_Llama3.1-8B_lrs3vox_Adown4_Vdown2" in md
    assert "cite" not in csv.splitlines()[0]


def test_a_long_model_name_wraps_inside_its_column():
    system = "checkpoints/salmonn-7b-lora-r8-whisper-large-v2-beats-iter3"
    lines = _render(_rows("librispeech", "test-clean", None, system), "run")
    assert max(len(line) for line in lines) <= 80
    width = lines[1].index("metric")  # the system column, folded over two lines
    assert "".join(ln[:width].strip() for ln in lines[3:5]) == system


def test_table_cells_are_printed_as_given_not_as_markup():
    rows = _rows("librispeech", "test-clean", None, system="ckpt[/bold] [red]x[/]")
    lines = _render(rows, "run [/] of ckpt[/bold]")
    assert "ckpt[/bold] [red]x[/]" in "\n".join(lines) and "run [/] of ckpt[/bold]" in lines[0]

"""Splitting a job for schedulers without Ray (`transcribe --shard K/N`: a Slurm array, a
Kubernetes indexed job) and `speechkit merge`: the shards' outputs into one results file,
with the ids found twice and the ids no shard has reported.

Where an id has several lines, an "ok" line wins over an error line, and among lines of the
same status the one read last (shards in the order given, a file's later lines after its
earlier ones) wins, as a resumed run's last line does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechkit.data import Item, Result, dumps_line, parse_result, read_jsonl, require_regular_file
from speechkit.errors import SpeechkitError
from speechkit.results import locked, model_label, output_file, same_model


def shard_items(items: Sequence[Item], shard: str | None) -> list[Item]:
    """Shard K of N (`"K/N"`, K from 0) of the items: by id, every N-th from the K-th, as
    `bench --shard` takes them, so the shards are balanced and together hold every item once."""
    from speechkit.evaluation.suites import parse_shard

    k_n = parse_shard(shard)
    if k_n is None:
        return list(items)
    k, n = k_n
    part = sorted(items, key=lambda it: it.id)[k::n]
    if items and not part:
        raise SpeechkitError(f"--shard {k}/{n}: this shard holds no items (the inputs have "
                             f"{len(items)}); use at most {len(items)} shards")
    return part


@dataclass
class MergeReport:
    """What a merge found and wrote."""

    out: Path
    written: int = 0  # ids in the merged file
    lines: dict[str, int] = field(default_factory=dict)  # result lines read, by shard file
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # id -> the files holding it
    differing: list[str] = field(default_factory=list)  # duplicates whose lines disagree
    failed: list[str] = field(default_factory=list)  # ids whose kept line is an error
    missing: list[str] = field(default_factory=list)  # expected ids that no shard has
    unexpected: list[str] = field(default_factory=list)  # ids that are not in the expected items

    @property
    def complete(self) -> bool:
        return not self.missing and not self.failed


def _read_shard(path: Path) -> list[Result]:
    if not path.exists():
        raise SpeechkitError(f"{path}: no such shard output; pass the JSONL files the shards wrote")
    require_regular_file(path, "shard output")
    torn = _torn_tail(path)
    out = []
    for lineno, obj, err in read_jsonl(path):
        result = parse_result(obj) if obj is not None else None
        if result is None and lineno == torn:
            raise SpeechkitError(
                f"{path}:{lineno} is a torn last line: the run writing this shard was killed "
                "mid-line; run that shard again with the same command (it resumes and repairs "
                "the file), then merge")
        if result is None:
            raise SpeechkitError(f"{path}:{lineno} is not a result line ({err or 'no id and path'}); pass "
                                 "the results files that transcribe or bench wrote")
        out.append(result)
    return out


def _torn_tail(path: Path) -> int | None:
    """The number of the file's last line when it lacks its newline (a killed writer), else None."""
    with open(path, "rb") as fh:
        data = fh.read()
    if not data or data.endswith(b"\n"):
        return None
    return data.count(b"\n") + 1


def _check_one_run(found: list[tuple[Path, Result]]) -> None:
    """Refuse to merge finished lines of different models or decode settings (the rule resume
    applies to a results file): their scores would mean nothing together."""
    ok = [(path, r) for path, r in found if r.status == "ok"]
    if not ok:
        return
    first_path, first = ok[0]
    for path, r in ok[1:]:
        if (r.model or first.model) and not same_model(r.model, first.model):
            raise SpeechkitError(
                f"{path} ({r.id}) was made by {model_label(r.model)} and {first_path} ({first.id}) by "
                f"{model_label(first.model)}; merge shards of one model and settings (run the odd shard "
                "again with them, --overwrite)")
        old, new = first.decode or {}, r.decode or {}
        if keys := [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]:
            was = ", ".join(f"{k} {old.get(k)!r}" for k in keys)
            now = ", ".join(f"{k} {new.get(k)!r}" for k in keys)
            raise SpeechkitError(
                f"{path} ({r.id}) was decoded with {now} and {first_path} ({first.id}) with "
                f"{was}; merge shards of one model and settings (run the odd shard again with "
                "them, --overwrite)")


def _wins(new: Result, old: Result) -> bool:
    return new.status == "ok" or old.status != "ok"


def _same(a: Result, b: Result) -> bool:
    return (a.status, a.text, a.error) == (b.status, b.text, b.error)


def merge_results(out: str | Path, shards: Sequence[str | Path],
                  expected: Sequence[Item] | None = None, overwrite: bool = False) -> MergeReport:
    """Write one line per id of `shards` to `out` (expected items' order first, then the
    order ids were found) and report duplicates, and the expected ids no shard has."""
    if not shards:
        raise SpeechkitError("no shard outputs given; pass the JSONL files to merge after OUT")
    real = output_file(out)
    paths = [Path(s) for s in shards]
    if real.exists() and real.stat().st_size and not overwrite and real not in {
            Path(os.path.realpath(p)) for p in paths}:
        raise SpeechkitError(f"{out} already exists; pass --overwrite to replace it, or another "
                             "output path")
    with locked(real, paths):  # no transcribe, bench or merge writes OUT or a shard meanwhile
        return _merge_locked(real, out, paths, expected)


def _merge_locked(real: Path, out: str | Path, paths: list[Path],
                  expected: Sequence[Item] | None) -> MergeReport:
    report = MergeReport(Path(out))
    kept: dict[str, Result] = {}
    where: dict[str, list[str]] = {}
    read = [(path, r) for path in paths for r in _read_shard(path)]
    _check_one_run(read)
    report.lines = {str(path): 0 for path in paths}
    for path, r in read:
        report.lines[str(path)] += 1
        where.setdefault(r.id, []).append(str(path))
        old = kept.get(r.id)
        if old is not None and not _same(old, r) and r.id not in report.differing:
            report.differing.append(r.id)
        if old is None or _wins(r, old):
            kept[r.id] = r
    report.duplicates = {i: files for i, files in where.items() if len(files) > 1}
    order = list(kept)
    if expected is not None:
        ids = [it.id for it in expected]
        wanted = set(ids)
        report.missing = [i for i in ids if i not in kept]
        report.unexpected = [i for i in order if i not in wanted]
        order = [i for i in ids if i in kept] + report.unexpected
    report.failed = [i for i in order if kept[i].status != "ok"]
    _write_atomic(real, [kept[i] for i in order])
    report.written = len(order)
    return report


def _write_atomic(real: Path, results: list[Result]) -> None:
    tmp = real.with_name(f".{real.name}.merge")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(dumps_line(r.to_dict()) for r in results)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, real)  # readers see the old file or the merged one

"""Benchmark suites: a JSON definition per dataset and a builder for its on-disk layout.

A suite says the task, metrics, normalizer, prompt, splits with their expected item counts,
the published results to print beside a run, and which builder turns the dataset's
standard layout into speechkit Items. `build_items` never drops anything silently: items
whose media is missing and items skipped by the protocol are counted and named.

The seam for `speechkit bench`: `load_suite(name)` -> `build_items(suite, root, split)` ->
run the model on the items -> `score_predictions(..., suite=suite, expected=items)` ->
`speechkit.evaluation.report.table_rows(summary, suite, split, system)` beside `suite.published`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from speechkit.data import Item, read_json_object, require_regular_file
from speechkit.errors import SpeechkitError
from speechkit.evaluation.metrics.normalizers import NORMALIZERS
from speechkit.inputs import write_manifest
from speechkit.tasks import TASKS, get_task

REPO_ROOT = Path(__file__).resolve().parents[2]


def manifests_dir() -> Path:
    """Where the built-in suite JSON files are: $SPEECHKIT_MANIFESTS, the installed package
    copy (speechkit/manifests), or the repository's top-level manifests/ folder."""
    env = os.environ.get("SPEECHKIT_MANIFESTS")
    if env:
        return Path(env)
    packaged = resources.files("speechkit") / "manifests"
    if packaged.is_dir():
        return Path(str(packaged))
    return REPO_ROOT / "manifests"


def suite_names() -> list[str]:
    """Names of the built-in suites."""
    d = manifests_dir()
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


@dataclass
class Suite:
    """A benchmark definition loaded from JSON (see manifests/*.json for the schema)."""

    name: str
    task: str
    metrics: list[str]
    splits: dict[str, dict[str, Any]]
    builder: str
    layout: str
    default_split: str
    primary_metric: str | None = None
    normalizer: str | None = None
    prompt: str | None = None
    language: str | None = None
    description: str = ""
    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_modality: str | None = None
    labels: list[str] | None = None
    data_root_candidates: list[str] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str | None) -> tuple[str, dict[str, Any]]:
        """(split name, its options); None gives the default split."""
        key = name or self.default_split
        if key not in self.splits:
            raise SpeechkitError(
                f"suite {self.name} has no split {key!r}; choose one of: {', '.join(self.splits)}"
            )
        return key, self.splits[key]

    def published_rows(
        self, split: str | None = None, modality: str | None = None
    ) -> list[dict[str, Any]]:
        """Published results for a split (and modality, when the suite has several)."""
        return [
            r
            for r in self.published
            if (split is None or r.get("split") in (None, split))
            and (modality is None or r.get("modality") in (None, modality))
        ]


_REQUIRED = ("name", "task", "metrics", "splits", "builder", "layout")


def suite_from_dict(d: dict[str, Any], path: Path | None = None) -> Suite:
    """Validate a suite definition; errors name the file and the field to fix."""
    where = str(path) if path else "suite definition"
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise SpeechkitError(f"{where}: missing field(s) {', '.join(missing)}")
    try:
        task = get_task(str(d["task"])).name
    except SpeechkitError as e:
        raise SpeechkitError(f"{where}: {e}") from None
    if d.get("normalizer") is not None and d["normalizer"] not in NORMALIZERS:
        raise SpeechkitError(
            f"{where}: unknown normalizer {d['normalizer']!r}; choose one "
            f"of: {', '.join(NORMALIZERS)}"
        )
    if d["builder"] not in builders():
        raise SpeechkitError(
            f"{where}: unknown builder {d['builder']!r}; choose one of: {', '.join(builders())}"
        )
    splits = d["splits"]
    if not isinstance(splits, dict) or not splits:
        raise SpeechkitError(f"{where}: `splits` must be an object with at least one split")
    default = d.get("default_split") or next(iter(splits))
    if default not in splits:
        raise SpeechkitError(f"{where}: default_split {default!r} is not one of the splits")
    for row in d.get("published", []):
        if not {"system", "metric", "value", "source"} <= set(row):
            raise SpeechkitError(
                f"{where}: each published row needs system, metric, value "
                f"and source (got {sorted(row)})"
            )
    return Suite(
        name=str(d["name"]),
        task=task,
        metrics=list(d["metrics"]),
        splits=splits,
        builder=d["builder"],
        layout=str(d["layout"]),
        default_split=default,
        primary_metric=d.get("primary_metric") or d["metrics"][0],
        normalizer=d.get("normalizer"),
        prompt=d.get("prompt"),
        language=d.get("language"),
        description=d.get("description", ""),
        modalities=d.get("modalities", {}),
        default_modality=d.get("default_modality"),
        labels=d.get("labels"),
        data_root_candidates=list(d.get("data_root_candidates", [])),
        published=list(d.get("published", [])),
        path=path,
        raw=d,
    )


def load_suite(name_or_path: str | Path) -> Suite:
    """A built-in suite by name, or a user's suite JSON by path."""
    p = Path(name_or_path)
    if p.suffix == ".json" or p.exists():
        if not p.exists():
            raise SpeechkitError(f"{p}: no such suite file")
    else:
        p = manifests_dir() / f"{name_or_path}.json"
        if not p.is_file():
            raise SpeechkitError(
                f"unknown suite {name_or_path!r}; built-in suites: "
                f"{', '.join(suite_names()) or '(none found)'}, or pass a "
                "suite JSON path"
            )
    return suite_from_dict(read_json_object(p, "suite file"), p)


def manifest_suite(path: str | Path, task: str | None = None) -> Suite:
    """A one-split suite over a JSONL manifest (speechkit or NeMo lines), for `bench FILE.jsonl`.

    The task comes from `task` or from the lines' own `task` field when they all agree.
    """
    from speechkit.inputs import read_manifest

    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise SpeechkitError(f"{path}: no such manifest file")
    require_regular_file(p, "manifest")
    if task is None:
        seen = {it.task for it in read_manifest(p) if it.task and not it.error}
        if len(seen) != 1:
            raise SpeechkitError(f"{path}: say which task its items are with --task ({', '.join(TASKS)}); "
                                 f"the lines name {sorted(seen) or 'none'}")
        task = seen.pop()
    t = get_task(task)
    return suite_from_dict({
        "name": p.stem, "task": t.name, "metrics": list(t.metrics),
        "splits": {"test": {"manifest": p.name}}, "builder": "manifest",
        "layout": f"a JSONL manifest ({p.name}) with paths relative to its folder",
        "data_root_candidates": [str(p.parent)],
        "description": f"items of {p.name}",
    }, p)


def resolve_data_root(suite: Suite, data_root: str | Path | None) -> Path:
    """The data root given, or the first of the suite's candidate roots that exists."""
    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise SpeechkitError(
                f"{suite.name}: data root {root} does not exist. Expected layout: {suite.layout}"
            )
        return root
    for cand in suite.data_root_candidates:
        if cand.startswith("$"):
            cand = os.environ.get(cand[1:], "")
        if not cand:
            continue
        for base in [Path(cand)] if Path(cand).is_absolute() else [Path.cwd(), REPO_ROOT]:
            if (base / cand).is_dir():
                return base / cand
    raise SpeechkitError(f"{suite.name}: pass --data-root DIR. Expected layout: {suite.layout}")


@dataclass
class BuildReport:
    """What a builder found: items, missing media, protocol skips and count checks."""

    suite: str
    split: str
    data_root: str
    expected: int | None
    found: int
    missing: list[str] = field(default_factory=list)  # referenced media that is absent
    skipped: dict[str, int] = field(default_factory=dict)  # protocol exclusions by reason
    warnings: list[str] = field(default_factory=list)
    selected: int | None = None  # items kept after --limit/--shard (None: all of them)
    selection: str | None = None  # e.g. "limit 100, shard 0/4"

    @property
    def complete(self) -> bool:
        return not self.missing and (self.expected is None or self.found == self.expected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "split": self.split,
            "data_root": self.data_root,
            "expected": self.expected,
            "found": self.found,
            "missing": len(self.missing),
            "skipped": self.skipped,
            "complete": self.complete,
            "warnings": self.warnings,
        } | ({"selected": self.selected, "selection": self.selection} if self.selection else {})


Built = tuple[list[Item], list[str], dict[str, int]]  # items, missing media, skips by reason


def build_items(
    suite: Suite, data_root: str | Path | None, split: str | None = None
) -> tuple[list[Item], BuildReport]:
    """Items of a suite split from its on-disk layout, with a report of what is missing."""
    name, opts = suite.split(split)
    root = Path(os.path.abspath(resolve_data_root(suite, data_root)))  # items hold absolute paths
    items, missing, skipped = builders()[suite.builder](suite, root, name, opts)
    if not items and not missing:
        raise SpeechkitError(
            f"{suite.name}/{name}: nothing found under {root}. Expected layout: {suite.layout}"
        )
    for it in items:
        it.task = it.task or suite.task
        it.prompt = it.prompt or suite.prompt
        it.language = it.language or suite.language
        it.meta.setdefault("suite", suite.name)
        it.meta.setdefault("split", name)
    expected = opts.get("expected_items")
    report = BuildReport(suite.name, name, str(root), expected, len(items), missing, skipped)
    if missing:
        report.warnings.append(
            f"{len(missing)} item(s) listed by the dataset have no media "
            f"file under {root} (e.g. {missing[0]})"
        )
    if expected is not None and len(items) != expected:
        report.warnings.append(
            f"found {len(items)} items but the {suite.name}/{name} protocol "
            f"has {expected}: results are not comparable with published "
            "numbers"
        )
    for reason, n in skipped.items():
        report.warnings.append(f"{n} item(s) skipped by the protocol: {reason}")
    return items, report


def build_manifest(
    suite: Suite | str, data_root: str | Path | None, split: str | None, out: str | Path
) -> BuildReport:
    """Write the suite's items as a JSONL manifest; missing media go to OUT.missing.txt."""
    s = load_suite(suite) if isinstance(suite, (str, Path)) else suite
    items, report = build_items(s, data_root, split)
    out = Path(out)
    write_manifest(items, out)
    missing_path = out.with_name(out.name + ".missing.txt")
    if report.missing:
        missing_path.write_text("\n".join(report.missing) + "\n", encoding="utf-8")
        report.warnings.append(f"missing files listed in {missing_path}")
    elif missing_path.exists():
        missing_path.unlink()  # a stale list from an earlier, half-filled build
    return report


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """`"K/N"` or `(K, N)` -> (K, N) with 0 <= K < N (K is 0-based, as --rank/--world-size)."""
    if shard is None:
        return None
    if isinstance(shard, str):
        if not shard.strip():  # `--shard "$K/$N"` with both unset: never run everything unsharded
            raise SpeechkitError("--shard is empty; use K/N with 0 <= K < N, e.g. 0/4 for the "
                                 "first of 4 shards, or leave --shard out to run every item")
        k, sep, n = shard.partition("/")
        try:
            shard = (int(k), int(n))
        except ValueError:
            raise SpeechkitError(
                f"--shard {shard!r}: use K/N with 0 <= K < N, e.g. 0/4 for the first of 4 shards"
            ) from None
    k, n = shard
    if n < 1 or not 0 <= k < n:
        raise SpeechkitError(f"--shard {k}/{n}: use K/N with 0 <= K < N (K counts from 0)")
    return k, n


def suite_items(
    suite: Suite | str | Path,
    data_root: str | Path | None,
    split: str | None = None,
    limit: int | None = None,
    shard: str | tuple[int, int] | None = None,
) -> tuple[list[Item], BuildReport]:
    """Items for a bench run: the first `limit` items in a stable order, then shard K of N.

    The limit is taken before sharding (as lmms-eval's --limit with --rank/--world-size), so
    the shards of a limited run merge into exactly the limited run. Items are ordered by id.
    """
    s = load_suite(suite) if isinstance(suite, (str, Path)) else suite
    items, report = build_items(s, data_root, split)
    items = sorted(items, key=lambda it: it.id)
    parts = []
    if limit is not None:
        if limit < 1:
            raise SpeechkitError(f"--limit {limit}: give a positive number of items")
        items = items[:limit]
        parts.append(f"limit {limit}")
    k_n = parse_shard(shard)
    if k_n is not None:
        k, n = k_n
        items = items[k::n]  # strided: shards stay balanced whatever the order
        parts.append(f"shard {k}/{n}")
    if parts:
        report.selected = len(items)
        report.selection = ", ".join(parts)
    return items, report


Builder = Callable[[Suite, Path, str, dict[str, Any]], Built]
BUILDERS: dict[str, Builder] = {}


def builders() -> dict[str, Builder]:
    """Layout builders by name (the built-in ones live in speechkit.evaluation.suite_builders)."""
    from speechkit.evaluation import (  # noqa: F401  (importing registers them)
        nonspeech,
        sqa_suites,
        suite_builders,
    )

    return BUILDERS


def register_builder(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make a layout builder available to suite files under `name`."""

    def deco(fn: Builder) -> Builder:
        BUILDERS[name] = fn
        return fn

    return deco

"""The model actor: one model per worker, loaded once, running windows of decoded items
through the local runner's batch loop and returning their result lines."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np

from speechkit.data import Item, Result, dumps_line
from speechkit.errors import SpeechkitError, decode_failure
from speechkit.models.base import AUDIO, ENROLL, VIDEO, DecodeOptions, SpeechModel
from speechkit.models.identity import ModelCard
from speechkit.models.registry import RuntimeOptions, load_model
from speechkit.prepare import _Prepared, add_lips, check_item, cut_inputs
from speechkit.runtime import Transcriber


def _load_same(card: ModelCard, runtime: RuntimeOptions) -> SpeechModel:
    """The model on this worker's device (the engine and quantization follow it, as locally),
    refused when its weights are not the ones the driver identified."""
    model = load_model(card.name, runtime)
    want, got = card.identity.get("sha256"), model.describe().get("sha256")
    if want and got and want != got:
        raise SpeechkitError(f"{card.name}: this worker's model files differ from the ones the "
                             f"run identified (sha256 {got[:12]} here, {want[:12]} there); give "
                             "every node the same model files (shared storage)")
    return model


class _Collected:
    """Where the worker's runner puts its results: kept for the driver, which writes them."""

    def __init__(self) -> None:
        self.results: list[Result] = []

    def write(self, result: Result) -> None:
        self.results.append(result)


class ModelWorker:
    """One model, loaded once per actor; each call runs a window of decoded items through the
    same batch loop as the local runner and returns their result lines."""

    def __init__(self, card: ModelCard, options: DecodeOptions, batch_size: int | None,
                 threads: int | None, settings: dict[str, Any]):
        runtime = replace(card.runtime, threads=threads) if threads else card.runtime
        self.model = _load_same(card, runtime)
        self.sink = _Collected()
        self.runner = Transcriber(self.model, options, self.sink, batch_size=batch_size)
        self.runner.settings.update(settings)  # results record the runner and its workers
        self.task = self.runner.options.task

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        prepared = [self._prepared(*row) for row in zip(batch["item"], batch["audio"],
                                                         batch["enroll"], batch["error"], strict=True)]
        self.sink.results.clear()
        self.runner._run_window(prepared)  # the local runner's loop: same batches, same results
        return {"result": [dumps_line(r.to_dict()) for r in self.sink.results]}

    def _prepared(self, line: str, audio: bytes, enroll: bytes, error: str) -> _Prepared:
        item = Item.from_dict(json.loads(line))
        if (why := check_item(item, self.model, self.task)) is not None:
            return _Prepared(item, error=why)
        if error:
            return _Prepared(item, error=error)
        need = self.model.streams(self.task)
        inputs = {AUDIO: np.frombuffer(audio, dtype=np.float32).copy()} if AUDIO in need else {}
        if ENROLL in need:
            inputs[ENROLL] = np.frombuffer(enroll, dtype=np.float32).copy()
        try:  # lip crops are made here, in the worker (cached per input like the local run's)
            extras = add_lips(item, self.task, inputs, None) if VIDEO in need else {}
        except Exception as e:  # a clip without a face under vsr: that item's error line
            return _Prepared(item, error=decode_failure(item.path, e, item.source))
        return cut_inputs(item, inputs, self.model, extras)

"""Conditioning on previous text (`--condition-on-previous-text`): each VAD piece of a long
file is prompted with the text of the piece before it, a file's pieces decode in turn, the
prompt is dropped after text decoded hot, and a run resumed after an interruption prompts its
pieces exactly as the uninterrupted run did."""

import re

import numpy as np
import pytest

from speechkit.data import Item, read_results
from speechkit.errors import SpeechkitError
from speechkit.journal import journal_path
from speechkit.models.base import DecodeOptions, Hypothesis
from speechkit.models.whisper_decode import MAX_PREVIOUS_TOKENS, WhisperTokens
from speechkit.prepare import _Prepared
from speechkit.runtime import previous_text
from speechkit.transcribe import transcribe_items

PAUSE_S = 3.0  # longer than the VAD's MAX_GAP_S: every clip becomes a piece of its own
CONDITIONED = DecodeOptions(language="en", condition_on_previous_text=True)


def _recording_with_pauses(testdata, tmp_path):
    """The five LibriVox clips of pocketsphinx-testdata, twice over, with 3 s pauses between
    them: about 80 s of real read speech in ten pieces."""
    from speechkit.media.ffmpeg import decode_audio
    from speechkit.media.wav import write_wav

    clips = sorted((testdata / "librivox").glob("*.wav"))
    pause = np.zeros(int(PAUSE_S * 16000), dtype=np.float32)
    pcm = np.concatenate([x for _ in range(2) for c in clips for x in (decode_audio(str(c)), pause)])
    return write_wav(tmp_path / "long.wav", pcm)


class _Calls:
    """Records every generate call of a real model (what it was prompted with, what it made);
    raises KeyboardInterrupt on call `stop_at`, as Ctrl-C would."""

    def __init__(self, model, stop_at: int | None = None):
        self.model, self.stop_at, self.calls = model, stop_at, []
        self.real = model.generate

    def __enter__(self):
        def generate(batch, options, prompts=None, languages=None, **kw):
            if self.stop_at is not None and len(self.calls) + 1 == self.stop_at:
                raise KeyboardInterrupt
            hyps = self.real(batch, options, prompts, languages, **kw)
            self.calls.append((len(batch), kw.get("previous"), [h.text for h in hyps]))
            return hyps

        self.model.generate = generate
        return self

    def __exit__(self, *exc):
        self.model.generate = self.real


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


@pytest.mark.slow
def test_each_piece_is_prompted_with_the_text_of_the_piece_before(whisper_base, testdata, tmp_path):
    path = _recording_with_pauses(testdata, tmp_path)
    with _Calls(whisper_base) as rec:
        stats = transcribe_items([Item(id="long", path=str(path))], whisper_base, CONDITIONED,
                                 tmp_path / "r.jsonl")
    assert stats.ok == 1
    assert len(rec.calls) >= 8  # one piece a call: a file's pieces decode in turn
    assert all(n == 1 for n, _, _ in rec.calls)
    assert rec.calls[0][1] == [None]  # the first piece has no text before it
    for (_, _, made), (_, prompted, _) in zip(rec.calls, rec.calls[1:], strict=False):
        assert prompted == made  # piece k is prompted with what piece k-1 made
    r = next(iter(read_results(tmp_path / "r.jsonl").values()))
    assert r.decode["condition_on_previous_text"] is True  # the result says how it was made
    assert _words(r.text).count("john dashwood had then leisure") == 2


@pytest.mark.slow
def test_a_resumed_conditioned_run_prompts_and_writes_as_an_uninterrupted_one(
        whisper_base, testdata, tmp_path):
    path = _recording_with_pauses(testdata, tmp_path)
    items = [Item(id="long", path=str(path))]
    with _Calls(whisper_base) as whole:
        transcribe_items(items, whisper_base, CONDITIONED, tmp_path / "whole.jsonl")
    out = tmp_path / "resumed.jsonl"
    with _Calls(whisper_base, stop_at=5) as first, pytest.raises(KeyboardInterrupt):
        transcribe_items(items, whisper_base, CONDITIONED, out)
    assert len(first.calls) == 4 and journal_path(out).is_file()  # four pieces kept
    with _Calls(whisper_base) as rest:
        transcribe_items(items, whisper_base, CONDITIONED, out)
    assert first.calls + rest.calls == whole.calls  # the same prompts, the same texts
    a = next(iter(read_results(tmp_path / "whole.jsonl").values()))
    b = next(iter(read_results(out).values()))
    assert b.text == a.text and b.segments == a.segments
    assert b.extras["resumed_pieces"] == 4


@pytest.mark.slow
def test_results_made_without_conditioning_are_not_resumed_with_it(whisper_base, testdata, tmp_path):
    path = _recording_with_pauses(testdata, tmp_path)
    items, out = [Item(id="long", path=str(path))], tmp_path / "r.jsonl"
    transcribe_items(items, whisper_base, DecodeOptions(language="en"), out)
    assert next(iter(read_results(out).values())).decode["condition_on_previous_text"] is False
    from speechkit.transcribe import transcribe_to_jsonl

    with pytest.raises(SpeechkitError, match="condition_on_previous_text"):
        transcribe_to_jsonl(items, whisper_base, CONDITIONED, out, progress=False)
    # before loading, the model's card fills in the same default as the loaded model
    from speechkit.models.identity import model_card

    assert model_card("whisper-base").resolve(DecodeOptions()) == whisper_base.resolve(DecodeOptions())


def test_text_decoded_hot_or_flagged_prompts_nothing():
    def piece(text, **extras):
        return Hypothesis(text=text, extras=extras)

    p = _Prepared(Item(id="x", path="x.wav"), spans=[(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)])
    p.hyps = [piece("one", temperature=0.0), piece("two", temperature=0.6),
              piece("three", temperature=0.4), piece("four four", warning="repetition loop")]
    assert previous_text(p, 0) is None
    assert previous_text(p, 1) == "one"
    assert previous_text(p, 2) is None  # after a piece decoded above 0.5 (openai-whisper)
    assert previous_text(p, 3) == "three"  # a fallback at 0.4 still prompts
    assert previous_text(p, 4) is None  # a loop is not carried on


def test_the_prompt_keeps_the_last_223_tokens_after_startofprev():
    tok = WhisperTokens(eot=1, sot=2, no_timestamps=3, timestamp_begin=4, no_speech=None,
                        tasks={"transcribe": 5}, languages={"en": 6}, suppress=(), vocab_size=10,
                        sot_prev=7)
    task = tok.prompt("en", "transcribe")
    previous = list(range(100, 400))
    prompt = tok.conditioned(previous, task)
    assert prompt == [7, *previous[-MAX_PREVIOUS_TOKENS:], 2, 6, 5]
    assert tok.conditioned([], task) == task
    # the new tokens are taken from the half of the 448 positions the prompt leaves free
    assert tok.max_new(prompt, 224, 448) == 221 and len(prompt) + 221 <= 448

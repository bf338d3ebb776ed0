"""Subtitle cues from a result's words, laid out as subtitle guidelines ask (the figures are
Netflix's timed text style guide for English): a cue ends at a sentence end or a pause
where it can, holds at most `max_line_count` lines of `max_line_width` characters, is not a
scrap of a word or two or under MIN_CUE_S on screen unless it stands alone in time, and stays
up long enough to be read at MAX_CHARS_PER_S where the next cue leaves room.

Words carry their times when they were decoded (`--word-timestamps`); otherwise a segment's
time is shared out over its words in proportion to their characters, and the segments'
edges are the only pauses known.
"""

from __future__ import annotations

from dataclasses import dataclass

from speechkit.data import Result
from speechkit.errors import SpeechkitError

MAX_LINE_CHARS = 42  # characters per line (Netflix)
MAX_LINES = 2  # lines per cue (Netflix)
MAX_CHARS_PER_S = 20.0  # reading speed, spaces counted (Netflix, adult programmes; 17 for children)
MIN_CUE_S = 1.0  # shortest time on screen (Netflix: 5/6 s, here rounded up to a second)
MAX_CUE_S = 7.0  # longest time on screen (Netflix)
PAUSE_S = 1.0  # a silence this long ends a cue: what follows stands alone in time
SHORT_PAUSE_S = 0.3  # a silence this long is a good place to end a cue
MIN_CUE_WORDS = 3  # fewer words than this make a scrap of a cue
SENTENCE_ENDS = tuple(".?!。？！…")
ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr prof rev gen col capt lt sgt vs etc e.g i.e "
                          "no vol fig approx".split())  # a full stop after these ends no sentence
CLAUSE_ENDS = tuple(",;:，、；：—")
# Words a line or cue may start with, so that it breaks before them rather than after them
# (the guidelines' "break before conjunctions and prepositions").
BREAK_BEFORE = frozenset(
    "and but or nor so yet because although though while whereas if unless until when where "
    "which who whom whose that than as to of in on at for with from by about into after before "
    "since without".split())

# Costs of the layout search (smaller is better). A cue costs CUE; ending it costs by where.
CUE, SCRAP = 1.0, 100.0  # a cue; a scrap that could join its neighbours
END_AT = {"sentence": 0.0, "pause": 0.5, "clause": 1.0, "before": 3.0, "any": 6.0}
SENTENCE_INSIDE = 3.0  # a cue that runs on past a sentence end
READING = 4.0  # a second short of the time its text takes to read


@dataclass(frozen=True)
class SubtitleOptions:
    """How cues are laid out (`--max-line-width`, `--max-line-count`, `--max-words-per-line`)."""

    max_line_width: int = MAX_LINE_CHARS
    max_line_count: int = MAX_LINES
    max_words_per_line: int | None = None

    def __post_init__(self) -> None:
        if self.max_line_width < 1 or self.max_line_count < 1 or (
                self.max_words_per_line is not None and self.max_words_per_line < 1):
            raise SpeechkitError("--max-line-width, --max-line-count and --max-words-per-line "
                                 "take whole numbers from 1; pass e.g. --max-line-width 42")


@dataclass(frozen=True)
class _Word:
    text: str
    start: float
    end: float


def _words(result: Result) -> list[_Word]:
    """Every spoken word of the result in order, with its time."""
    out: list[_Word] = []
    for seg in result.segments:
        if seg.words:
            out += [_Word(w.word.strip(), w.start, max(w.end, w.start)) for w in seg.words
                    if w.word.strip()]
            continue
        texts = seg.text.split()
        total = sum(len(t) + 1 for t in texts) or 1
        at, span = seg.start, max(seg.end - seg.start, 0.0)
        for t in texts:  # the segment's time in proportion to the characters
            end = at + span * (len(t) + 1) / total
            out.append(_Word(t, at, end))
            at = end
        if texts:  # no rounding gap at the segment's end
            out[-1] = _Word(out[-1].text, out[-1].start, seg.end)
    return out


def ends_sentence(word: str, following: str | None) -> bool:
    """Whether a sentence ends with `word` ("Mr." and "J." do not end one, nor a full stop
    before a word in lower case)."""
    bare = word.rstrip("\"')”’")
    if not bare.endswith(SENTENCE_ENDS):
        return False
    if bare.endswith(".") and not bare.endswith(".."):
        stem = bare[:-1].lstrip("\"'(“")
        if stem.lower() in ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):
            return False
    return not following or not following[:1].islower()


def _break_kind(words: list[_Word], i: int) -> str:
    """How good a place the gap after words[i] is to end a cue or a line."""
    w, nxt = words[i], words[i + 1]
    if ends_sentence(w.text, nxt.text):
        return "sentence"
    if nxt.start - w.end >= SHORT_PAUSE_S:
        return "pause"
    if w.text.endswith(CLAUSE_ENDS):
        return "clause"
    if nxt.text.lower().strip("\"'(“") in BREAK_BEFORE:
        return "before"
    return "any"


def _fits(texts: list[str], options: SubtitleOptions) -> bool:
    """Whether the words fit in `max_line_count` lines: filled greedily, the fewest lines."""
    most = options.max_words_per_line or len(texts)
    lines, length, count = 1, -1, 0
    for t in texts:
        if count and (length + 1 + len(t) > options.max_line_width or count == most):
            lines, length, count = lines + 1, -1, 0
            if lines > options.max_line_count:
                return False
        length, count = length + 1 + len(t), count + 1
    return True


def _lines(texts: list[str], kinds: list[str], options: SubtitleOptions) -> list[str] | None:
    """The words of one cue as at most `max_line_count` lines, or None if they do not fit.
    One line where it fits; else the fewest lines, balanced in length, broken at the best
    places (`kinds[k]`: the break after word k)."""
    width, most = options.max_line_width, options.max_words_per_line or len(texts)
    n = len(texts)

    def length(a: int, b: int) -> int:
        return sum(len(t) for t in texts[a:b]) + (b - a - 1)

    def fits(a: int, b: int) -> bool:
        return b - a <= most and (length(a, b) <= width or b - a == 1)

    for count in range(1, min(options.max_line_count, n) + 1):
        best: dict[tuple[int, int], tuple[float, list[int]]] = {(0, 0): (0.0, [])}
        for used in range(count):  # best[(lines, words)]: (cost, break positions)
            for (lines, a), (cost, cuts) in list(best.items()):
                if lines != used:
                    continue
                for b in range(a + 1, n + 1):
                    if not fits(a, b):
                        if b - a > 1:
                            break
                        continue
                    if used + 1 < count and b == n:
                        continue
                    c = cost + (width - length(a, b)) ** 2 / width + (
                        END_AT[kinds[b - 1]] if b < n else 0.0)
                    key = (used + 1, b)
                    if key not in best or c < best[key][0]:
                        best[key] = (c, [*cuts, b])
        if (count, n) in best:
            cuts = [0, *best[(count, n)][1]]
            return [" ".join(texts[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    return None


def cues(result: Result, options: SubtitleOptions = SubtitleOptions()
         ) -> list[tuple[float, float, str]]:
    """(start, end, text with line breaks) of each subtitle cue of a result."""
    words = _words(result)
    if not words:
        return []
    end_of_audio = max(result.duration_s or 0.0, max(s.end for s in result.segments))
    out: list[tuple[float, float, str]] = []
    block = [words[0]]
    for prev, w in zip(words, words[1:], strict=False):  # a long pause ends a cue whatever it leaves
        if w.start - prev.end >= PAUSE_S:
            out += _block_cues(block, options)
            block = []
        block.append(w)
    out += _block_cues(block, options)
    timed = []
    for k, (start, end, text) in enumerate(out):  # on screen long enough to be read
        limit = out[k + 1][0] if k + 1 < len(out) else end_of_audio
        wanted = start + max(MIN_CUE_S, len(text) / MAX_CHARS_PER_S)
        end = min(max(end, wanted), max(limit, end))
        timed.append((round(start, 3), round(end, 3), text))
    return timed


def _block_cues(words: list[_Word], options: SubtitleOptions) -> list[tuple[float, float, str]]:
    """The cues of words with no long pause among them: the split into cues of least cost
    (dynamic programming over where each cue ends)."""
    n = len(words)
    texts = [w.text for w in words]
    kinds = [_break_kind(words, i) for i in range(n - 1)] + ["sentence"]
    chars = [0]  # chars[k]: characters of the first k words, a space after each
    sentences = [0]  # sentences[k]: sentence ends after the first k words
    for t, kind in zip(texts, kinds, strict=True):
        chars.append(chars[-1] + len(t) + 1)
        sentences.append(sentences[-1] + (kind == "sentence"))
    best: list[tuple[float, int]] = [(0.0, 0)] * (n + 1)  # cost so far, where the last cue starts
    for b in range(1, n + 1):
        best[b] = (float("inf"), b - 1)
        for a in range(b - 1, -1, -1):
            if b - a > 1 and (words[b - 1].end - words[a].start > MAX_CUE_S
                              or not _fits(texts[a:b], options)):
                break  # a longer cue does not fit either
            cost = best[a][0] + CUE + (END_AT[kinds[b - 1]] if b < n else 0.0)
            cost += SENTENCE_INSIDE * (sentences[b - 1] - sentences[a])
            on_screen = (words[b].start if b < n else words[b - 1].end + MIN_CUE_S) - words[a].start
            if (b - a < MIN_CUE_WORDS or on_screen < MIN_CUE_S) and (a, b) != (0, n):
                cost += SCRAP
            cost += READING * max(0.0, (chars[b] - chars[a] - 1) / MAX_CHARS_PER_S - on_screen)
            if cost < best[b][0]:
                best[b] = (cost, a)
    out, b = [], n
    while b > 0:
        a = best[b][1]
        lines = _lines(texts[a:b], kinds[a:b], options) or [" ".join(texts[a:b])]
        out.append((words[a].start, words[b - 1].end, "\n".join(lines)))
        b = a
    return out[::-1]

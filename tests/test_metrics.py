"""Metrics against known values: jiwer/sacreBLEU agreement, hand-computed EER/minDCF, edge cases."""

from __future__ import annotations

import importlib.util
import math
from collections import Counter

import jiwer
import pytest
import sacrebleu

from speechkit.errors import SpeechkitError
from speechkit.evaluation.metrics.bleu import corpus_bleu_chrf, tokenizer_for
from speechkit.evaluation.metrics.captioning import caption_metrics, java_problem, python_ptb_tokenize
from speechkit.evaluation.metrics.classification import LabelMapper, classification_metrics
from speechkit.evaluation.metrics.eer import equal_error_rate, min_dcf, parse_yes_no, sv_metrics
from speechkit.evaluation.metrics.normalizers import NORMALIZERS, get_normalizer
from speechkit.evaluation.metrics.sqa import exact_match, extract_choice, sqa_metrics, token_f1
from speechkit.evaluation.metrics.wer import error_rates

HAS_PYCOCO = importlib.util.find_spec("pycocoevalcap") is not None

# --- normalizers ------------------------------------------------------------------------------


def test_whisper_en_normalizer_spells_and_expands():
    norm = get_normalizer("whisper-en")
    # Whisper's normalizer also expands "'s" to "is" (its documented contraction rule).
    assert norm("Mr. Smith's colour, twenty-five dollars!") == "mister smith is color $25"


def test_basic_lrs3_and_none_normalizers():
    assert get_normalizer("basic")("Hello,  World! It's") == "hello world it s"
    assert get_normalizer("lrs3")("IT'S  A Test.") == "it's a test."
    assert get_normalizer("none")("As Is.") == "As Is."
    assert get_normalizer("whisper-basic")("Hello, [noise] World") == "hello world"


def test_unknown_normalizer_lists_the_choices():
    with pytest.raises(SpeechkitError) as e:
        get_normalizer("fancy")
    assert all(name in str(e.value) for name in NORMALIZERS)


# --- WER / CER --------------------------------------------------------------------------------

REFS = ["the cat sat on the mat", "hello world", "a b c d"]
HYPS = ["the cat sit on mat", "hello big world", "a b c d"]


def test_wer_and_cer_agree_with_jiwer():
    r = error_rates(REFS, HYPS)
    assert r.wer == pytest.approx(100 * jiwer.wer(REFS, HYPS))
    assert r.cer == pytest.approx(100 * jiwer.cer(REFS, HYPS))
    assert (r.substitutions, r.deletions, r.insertions) == (1, 1, 1)
    assert r.ref_words == 12 and r.hits == 10


def test_corpus_wer_differs_from_mean_of_utterance_wers():
    refs = ["one two three four five six seven eight nine ten", "yes"]
    hyps = ["one two three four five six seven eight nine ten", "no"]
    r = error_rates(refs, hyps)
    assert r.wer == pytest.approx(100 / 11)  # 1 edit / 11 reference words
    assert r.mean_utterance_wer() == pytest.approx(50.0)  # (0% + 100%) / 2


def test_per_utterance_edits_are_kept():
    r = error_rates(["a b c"], ["a x c d"], ids=["u1"])
    u = r.per_utterance[0]
    assert (u.id, u.substitutions, u.deletions, u.insertions, u.hits) == ("u1", 1, 0, 1, 2)


def test_empty_reference_counts_hypothesis_words_as_insertions():
    r = error_rates(["a b", ""], ["a b", "x y"], ids=["ok", "empty"])
    assert r.empty_references == 1
    assert r.per_utterance[1].insertions == 2
    assert r.wer == pytest.approx(100.0)  # 2 insertions / 2 reference words


def test_all_references_empty_gives_no_wer_rather_than_zero_or_inf():
    r = error_rates(["", "  "], ["x", ""])
    assert r.wer is None and r.cer is None
    assert r.insertions == 1


def test_all_deletion_hypotheses_give_100_percent():
    r = error_rates(["one two three", "four"], ["", ""])
    assert r.wer == pytest.approx(100.0)
    assert r.deletions == 4 and r.hits == 0


def test_normalizer_is_applied_to_both_sides():
    r = error_rates(
        ["Mr. Smith paid 25 dollars."],
        ["mister smith paid twenty five dollars"],
        normalizer=get_normalizer("whisper-en"),
    )
    assert r.wer == 0.0


# --- BLEU / chrF ------------------------------------------------------------------------------


def test_bleu_and_chrf_agree_with_sacrebleu():
    hyps = ["The cat sat on the mat.", "It is raining today."]
    refs = ["The cat sat on a mat.", "It rains today."]
    d = corpus_bleu_chrf(hyps, refs, target_language="en")
    assert d["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert d["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert "tok:13a" in d["bleu_signature"] and d["tokenizer"] == "13a"
    assert "nrefs:1" in d["chrf_signature"]


def test_tokenizer_follows_the_target_language():
    assert tokenizer_for("de") == "13a" and tokenizer_for(None) == "13a"
    assert tokenizer_for("zh-CN") == "zh"
    assert tokenizer_for("th") == "char"
    has_mecab = importlib.util.find_spec("MeCab") and importlib.util.find_spec("ipadic")
    assert tokenizer_for("ja") == ("ja-mecab" if has_mecab else "char")


def test_chinese_bleu_uses_the_zh_tokenizer():
    d = corpus_bleu_chrf(["我喜欢猫"], ["我喜欢狗"], target_language="zh")
    assert "tok:zh" in d["bleu_signature"]
    assert d["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(["我喜欢猫"], [["我喜欢狗"]], tokenize="zh").score
    )


# --- EER / minDCF -----------------------------------------------------------------------------


def test_eer_on_a_hand_computed_score_list():
    # Targets 0.9 0.8 0.4, non-targets 0.7 0.3 0.2: at threshold 0.7 one target of three is
    # rejected (0.4) and one non-target of three accepted (0.7): P_miss = P_fa = 1/3.
    eer, thr = equal_error_rate([0.9, 0.8, 0.4, 0.7, 0.3, 0.2], [1, 1, 1, 0, 0, 0])
    assert eer == pytest.approx(1 / 3) and thr == pytest.approx(0.7)


def test_eer_is_interpolated_between_operating_points():
    # At t=0.6: P_miss 0, P_fa 1/4; at t=0.7: P_miss 1/2, P_fa 1/4 -> crossing at 1/4.
    eer, _ = equal_error_rate([0.9, 0.6, 0.7, 0.1, 0.2, 0.3], [1, 1, 0, 0, 0, 0])
    assert eer == pytest.approx(0.25)


def test_perfectly_separated_scores_have_zero_eer_and_mindcf():
    scores, labels = [0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]
    assert equal_error_rate(scores, labels)[0] == pytest.approx(0.0)
    assert min_dcf(scores, labels, 0.01)[0] == pytest.approx(0.0)


def test_min_dcf_known_cases():
    scores, labels = [0.9, 0.8, 0.4, 0.7, 0.3, 0.2], [1, 1, 1, 0, 0, 0]
    # Normalized DCF = P_miss + P_fa (1 - p) / p; best is rejecting 0.4 and 0.7: P_miss 1/3.
    assert min_dcf(scores, labels, 0.01)[0] == pytest.approx(1 / 3)
    assert min_dcf(scores, labels, 0.5)[0] == pytest.approx(1 / 3)
    # Inverted scores: nothing beats rejecting every trial (normalized cost 1).
    assert min_dcf([0.1, 0.9], [1, 0], 0.05)[0] == pytest.approx(1.0)


def test_eer_needs_both_classes():
    with pytest.raises(ValueError):
        equal_error_rate([0.1, 0.2], [1, 1])


def test_yes_no_accuracy_lists_unparsed_answers():
    assert parse_yes_no("Yes, it is the same person.") is True
    assert parse_yes_no("They are not the same speaker") is False
    assert parse_yes_no("Hard to tell") is None
    d = sv_metrics(
        [1, 0, 1, 0],
        scores=[0.9, 0.2, 0.8, 0.1],
        answers=["yes", "no", "maybe", "Yes"],
        ids=["a", "b", "c", "d"],
    )
    assert d["accuracy"] == pytest.approx(50.0)
    assert d["unparsed_answers"] == [{"id": "c", "answer": "maybe"}]
    assert d["eer"] == pytest.approx(0.0) and "mindcf_0.01" in d and "mindcf_0.05" in d


# --- emotion recognition ----------------------------------------------------------------------


def test_label_mapping_uses_synonyms_and_the_first_label_in_the_text():
    m = LabelMapper()
    assert m("The speaker sounds joyful.") == "happy"
    assert m("Anger, maybe sadness") == "angry"
    assert m("unhappy") == "sad"  # longest synonym first: not "happy"
    assert m("exc") == "happy"  # IEMOCAP: excited merged into happy
    assert m("calm") == "neutral" and m("mad!") == "angry"
    assert m("surprised") is None
    assert LabelMapper(["neutral", "happy", "sad", "angry"])("Joy!") == "happy"
    assert LabelMapper(["calm", "fearful"])("fearful, I think") == "fearful"


def test_wa_ua_confusion_and_unmapped_answers():
    refs = ["neu", "neu", "hap", "exc", "sad", "ang"]
    answers = ["neutral", "sad", "happy", "I am thrilled", "Sadness.", "He is mad"]
    d = classification_metrics(refs, answers, ids=list("abcdef"))
    assert d["weighted_accuracy"] == pytest.approx(100 * 4 / 6)
    # Recalls: neutral 1/2, happy 1/2, sad 1, angry 1 -> mean 0.75.
    assert d["unweighted_accuracy"] == pytest.approx(75.0)
    assert d["unmapped_answers"] == [{"id": "d", "answer": "I am thrilled"}]
    assert d["confusion"]["happy"]["<unmapped>"] == 1
    assert d["confusion"]["neutral"]["sad"] == 1


# --- spoken QA --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, letter",
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("The answer is B", "B"),
        ("The answer is (C).", "C"),
        ("Answer: D", "D"),
        ("B) a dog barking", "B"),
        ("I choose option A.", "A"),
        ("the answer is a dog", None),
        ("A or B", None),
    ],
)
def test_multiple_choice_letter_extraction(answer, letter):
    assert extract_choice(answer) == letter


def test_multiple_choice_option_text_is_matched_when_no_letter():
    choices = ["a dog barking", "rain on a roof", "a man speaking"]
    assert extract_choice("It sounds like rain on a roof to me", choices) == "B"
    assert extract_choice("a dog barking or a man speaking", choices) is None  # ambiguous


def test_squad_exact_match_and_f1():
    assert exact_match("The Eiffel Tower!", ["eiffel tower"])
    assert token_f1("the cat sat", ["cat sat on mat"]) == pytest.approx(2 / 3)
    d = sqa_metrics(
        ["B", "(A) rain", "Paris", "in london"],
        ["B", "C", "Paris", "London"],
        choices=[["x", "y"], ["rain", "b", "c"], None, None],
    )
    assert d["accuracy"] == pytest.approx(50.0) and d["multiple_choice_items"] == 2
    assert d["exact_match"] == pytest.approx(50.0)
    assert d["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)


# --- captioning -------------------------------------------------------------------------------


def _cider_d(cands: list[str], refs: list[list[str]], n: int = 4, sigma: float = 6.0) -> float:
    """Independent CIDEr-D (Vedantam et al. 2015, coco-caption variant) for cross-checking."""

    def grams(s: str) -> Counter:
        w = s.split()
        return Counter(tuple(w[i : i + k]) for k in range(1, n + 1) for i in range(len(w) - k + 1))

    df: Counter = Counter()
    for rs in refs:
        df.update({g for r in rs for g in grams(r)})
    log_n = math.log(len(refs))

    def vec(s: str):
        g = grams(s)
        v = {x: c * (log_n - math.log(max(1.0, df[x]))) for x, c in g.items()}
        norms = [
            math.sqrt(sum(val**2 for x, val in v.items() if len(x) == k)) for k in range(1, n + 1)
        ]
        return v, norms, max(len(s.split()) - 1, 0)  # coco-caption counts length in bigrams

    total = 0.0
    for c, rs in zip(cands, refs, strict=True):
        vc, nc, lc = vec(c)
        score = 0.0
        for r in rs:
            vr, nr, lr = vec(r)
            for k in range(1, n + 1):
                dot = sum(
                    min(val, vr.get(x, 0.0)) * vr.get(x, 0.0)
                    for x, val in vc.items()
                    if len(x) == k
                )
                if nc[k - 1] and nr[k - 1]:
                    dot /= nc[k - 1] * nr[k - 1]
                score += dot * math.exp(-((lc - lr) ** 2) / (2 * sigma**2))
        total += 10.0 * score / n / len(rs)
    return total / len(cands)


CANDS = ["a dog barks loudly", "rain falls on a roof", "a man is talking"]
CAPS = [
    ["a dog is barking loudly", "dogs bark"],
    ["rain falling on a tin roof", "heavy rain on the roof"],
    ["a man speaks", "a person talks to people"],
]


@pytest.mark.skipif(not HAS_PYCOCO, reason="pycocoevalcap not installed")
def test_caption_metrics_cider_d_matches_the_paper_formula():
    d = caption_metrics(CANDS, CAPS, use_java=False)
    assert d["cider_d"] == pytest.approx(_cider_d(CANDS, CAPS))
    assert d["tokenizer"] == "ptb-python-approximation"


@pytest.mark.skipif(not HAS_PYCOCO, reason="pycocoevalcap not installed")
def test_identical_captions_score_one_and_missing_java_metrics_are_absent_not_zero():
    caps = ["a dog barks at a passing car", "heavy rain falls on a tin roof"]
    d = caption_metrics(caps, [[c] for c in caps], use_java=False)
    assert d["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert d["rouge_l"] == pytest.approx(1.0)
    for m in ("meteor", "spice", "spider"):
        assert m not in d and m in d["not_run"] and m not in d["ran"]


@pytest.mark.skipif(
    not HAS_PYCOCO or java_problem() is not None, reason="needs pycocoevalcap and a Java runtime"
)
def test_java_metrics_run_when_java_is_present():
    d = caption_metrics(CANDS, CAPS)
    assert d["tokenizer"].startswith("ptb-stanford")
    assert "meteor" in d["ran"] and 0 < d["meteor"] < 1
    assert ("spice" in d["ran"]) != ("spice" in d["not_run"])  # ran, or says why not


def test_python_ptb_fallback_drops_punctuation():
    assert python_ptb_tokenize("A dog's bark, (loud)!") == "a dog 's bark loud"

"""Speaker verification: EER and minDCF from trial scores, and accuracy of yes/no answers.

Protocol (VoxCeleb1-O; NIST SRE cost function as in Kaldi `compute_min_dcf.py`):
- Scores are continuous, higher = more likely the same speaker: cosine similarity of
  speaker embeddings, or P("yes") from a speech LLM's first generated token.
- A trial is accepted when score >= threshold. The EER is where the false-reject rate
  equals the false-accept rate, linearly interpolated between the two operating points
  around the crossing.
- DCF(t) = C_miss * P_miss(t) * p_target + C_fa * P_fa(t) * (1 - p_target), normalized by
  min(C_miss * p_target, C_fa * (1 - p_target)); minDCF is its minimum over thresholds.
  C_miss = C_fa = 1; p_target 0.01 and 0.05 (VoxSRC reports 0.05, SRE-style 0.01).
EER is reported in percent, minDCF as a plain number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

P_TARGETS = (0.01, 0.05)


def error_curves(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, ...]:
    """(thresholds, P_miss, P_fa) at every distinct score, plus both extremes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError("scores and labels must be 1-D and the same length")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers")
    n_tar, n_non = int(y.sum()), int((~y).sum())
    if n_tar == 0 or n_non == 0:
        raise ValueError(f"need target and non-target trials (got {n_tar} and {n_non})")
    thresholds = np.unique(s)  # ascending
    # Accept when score >= t. P_miss(t) = share of targets with score < t;
    # P_fa(t) = share of non-targets with score >= t.
    tar_sorted, non_sorted = np.sort(s[y]), np.sort(s[~y])
    p_miss = np.searchsorted(tar_sorted, thresholds, side="left") / n_tar
    p_fa = 1.0 - np.searchsorted(non_sorted, thresholds, side="left") / n_non
    # Extremes: accept everything (P_miss 0, P_fa 1) and reject everything (1, 0).
    thresholds = np.concatenate([[-np.inf], thresholds, [np.inf]])
    p_miss = np.concatenate([[0.0], p_miss, [1.0]])
    p_fa = np.concatenate([[1.0], p_fa, [0.0]])
    return thresholds, p_miss, p_fa


def equal_error_rate(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """(EER as a fraction, threshold there), interpolated at the P_miss = P_fa crossing."""
    thr, p_miss, p_fa = error_curves(scores, labels)
    diff = p_miss - p_fa  # rises from -1 to +1 as the threshold grows
    j = int(np.argmax(diff >= 0))  # first point at or past the crossing
    if diff[j] == 0:
        return float(p_miss[j]), float(thr[j])
    i = j - 1
    t = diff[i] / (diff[i] - diff[j])  # fraction of the way from point i to point j
    eer = p_fa[i] + t * (p_fa[j] - p_fa[i])
    lo, hi = thr[i], thr[j]
    threshold = lo if not np.isfinite(hi) else hi if not np.isfinite(lo) else lo + t * (hi - lo)
    return float(eer), float(threshold)


def min_dcf(
    scores: Sequence[float],
    labels: Sequence[int],
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """(normalized minDCF, threshold there) at prior `p_target`."""
    thr, p_miss, p_fa = error_curves(scores, labels)
    dcf = c_miss * p_miss * p_target + c_fa * p_fa * (1.0 - p_target)
    k = int(np.argmin(dcf))
    return float(dcf[k] / min(c_miss * p_target, c_fa * (1.0 - p_target))), float(thr[k])


_YES = re.compile(r"\b(yes|yeah|yep|same|identical)\b")
_NO = re.compile(r"\b(no|nope|not|different)\b")


def parse_yes_no(text: str) -> bool | None:
    """True for a yes answer, False for no, None when neither (first cue in the text wins)."""
    t = (text or "").lower()
    y, n = _YES.search(t), _NO.search(t)
    if y and n:
        return y.start() < n.start()
    return True if y else False if n else None


def sv_metrics(
    labels: Sequence[int],
    scores: Sequence[float | None] | None = None,
    answers: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """EER/minDCF from the scores that exist, accuracy from the yes/no answers that exist."""
    n = len(labels)
    ids = list(ids) if ids is not None else [str(i) for i in range(n)]
    out: dict[str, Any] = {"trials": n, "targets": int(sum(bool(v) for v in labels))}
    if scores is not None:
        have = [i for i, s in enumerate(scores) if s is not None]
        out["scored_trials"] = len(have)
        out["trials_without_score"] = [ids[i] for i, s in enumerate(scores) if s is None]
        try:
            ls, ss = [int(labels[i]) for i in have], [float(scores[i]) for i in have]
            eer, thr = equal_error_rate(ss, ls)
            out["eer"] = 100.0 * eer
            out["eer_threshold"] = thr
            for p in P_TARGETS:
                out[f"mindcf_{p:g}"] = min_dcf(ss, ls, p)[0]
        except ValueError as e:
            out["eer"] = None
            out["eer_not_computed"] = str(e)
    if answers is not None:
        parsed = [parse_yes_no(a) for a in answers]
        correct = sum(
            p is not None and p == bool(lab) for p, lab in zip(parsed, labels, strict=True)
        )
        out["accuracy"] = 100.0 * correct / n if n else None
        out["unparsed_answers"] = [
            {"id": ids[i], "answer": answers[i]} for i, p in enumerate(parsed) if p is None
        ]
    return out

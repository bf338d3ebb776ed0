"""Whisper decoding on a transformers model (the torch engine), batched, with the rules of
whisper_decode.py applied to the logits at each step.

One encoder pass per window serves language detection, every fallback temperature and the
word-timing pass, and the decoder's cross-attention keys and values of a window are computed
once per decoding and shared by every temperature, sampled candidate and beam: computed per
row and per temperature they cost 9 GFLOP a window each time (whisper-base), 26 times for a
window that falls back to temperature 1.0 with 5 candidates. The decoder runs on the model's
own layers (whisper_steps.py). Each row of a batch is decoded independently, so batched
output equals one-at-a-time output (up to float rounding, see `_sample`).

A repetition loop runs to the token limit (224 tokens) in every candidate caught in it, at
every temperature: a 3.6 s clip that falls back through all of them took 720 decoder steps.
A row in a loop is fed the loop's likely next tokens as a draft and keeps those the model
picks itself, so a loop takes a pass per draft instead of one per token (prompt-lookup
drafting: the model checks every token, nothing is guessed into the text).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from speechkit.models.whisper_decode import (
    BEST_OF,
    MAX_INITIAL_TIMESTAMP_INDEX,
    SAMPLING_SEED,
    TEMPERATURES,
    Decoded,
    WhisperTokens,
    compression_ratio,
)
from speechkit.models.whisper_steps import StepDecoder, cross_states

NEG_INF = float("-inf")
# A row whose last DRAFT_MATCH tokens occurred before is fed up to DRAFT_TOKENS draft tokens
# with its next one (see WhisperDecoder._sample).
DRAFT_MATCH = 4
DRAFT_TOKENS = 12


class WhisperDecoder:
    """Greedy, beam and sampled decoding of Whisper windows from their encoder states."""

    def __init__(self, model: Any, tokenizer: Any, tokens: WhisperTokens):
        self.model = model
        self.tokenizer = tokenizer
        self.tok = tokens
        bias = torch.zeros(tokens.vocab_size)
        special = [t for t in range(tokens.eot + 1, tokens.timestamp_begin)]  # SOT, languages, tasks, ...
        bias[[t for t in (*tokens.suppress, *special) if t < tokens.vocab_size]] = NEG_INF
        self._suppress = bias.to(model.device)  # added to every step's logits

    # -- model calls ---------------------------------------------------------------------------

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.model.encoder(features).last_hidden_state

    @torch.inference_mode()
    def detect_language(self, enc: torch.Tensor) -> list[tuple[str, float]]:
        """(language code, probability) per row from the first decoder step."""
        ids = torch.full((enc.shape[0], 1), self.tok.sot, dtype=torch.long, device=enc.device)
        steps = StepDecoder(self.model, cross_states(self.model, enc), list(range(enc.shape[0])), 1)
        logits = steps.logits(steps.step(ids))[:, -1]
        codes = list(self.tok.languages)
        lang_ids = torch.tensor([self.tok.languages[c] for c in codes], device=enc.device)
        probs = logits[:, lang_ids].softmax(-1)
        best = probs.argmax(-1).tolist()
        return [(codes[b], float(probs[i, b])) for i, b in enumerate(best)]

    # -- decoding with fallback ----------------------------------------------------------------

    @torch.inference_mode()
    def decode(self, enc: torch.Tensor, prompts: list[list[int]], beam_size: int,
               max_new_tokens: int, temperatures: tuple[float, ...] = TEMPERATURES) -> list[Decoded]:
        """Decode each row; rows whose text fails the checks are decoded again, hotter. Rows
        prompted with previous text of different lengths are decoded a length at a time."""
        if len({len(p) for p in prompts}) > 1:
            out: list[Decoded] = [None] * len(prompts)  # type: ignore[list-item]
            for n in sorted({len(p) for p in prompts}):
                rows = [i for i, p in enumerate(prompts) if len(p) == n]
                for i, d in zip(rows, self.decode(enc[rows], [prompts[i] for i in rows], beam_size,
                                                  max_new_tokens, temperatures), strict=True):
                    out[i] = d
            return out
        results: list[Decoded | None] = [None] * len(prompts)
        cross = cross_states(self.model, enc)
        todo = list(range(len(prompts)))
        for t_index, temperature in enumerate(temperatures):
            sub_prompts = [prompts[i] for i in todo]
            if temperature == 0.0:
                decoded = self._run(enc, cross, todo, sub_prompts, max_new_tokens, beam_size=beam_size)
            else:
                decoded = self._run(enc, cross, todo, sub_prompts, max_new_tokens,
                                    temperature=temperature, candidates=BEST_OF)
            last = t_index == len(temperatures) - 1
            retry = []
            for i, d in zip(todo, decoded, strict=True):
                results[i] = d
                if d.needs_fallback() and not last:
                    retry.append(i)
            todo = retry
            if not todo:
                break
        return [r for r in results if r is not None]

    def _run(self, enc: torch.Tensor, cross: list[tuple[torch.Tensor, torch.Tensor]],
             windows: list[int], prompts: list[list[int]], max_new_tokens: int,
             beam_size: int = 1, temperature: float = 0.0, candidates: int = 1) -> list[Decoded]:
        """One pass over `windows` (rows of `enc`) at one temperature. Beam search at 0, else
        `candidates` samples each."""
        width = beam_size if temperature == 0.0 else candidates
        n = len(prompts)
        rows = [list(p) for p in prompts for _ in range(width)]
        prefix = len(rows[0])
        max_new = self.tok.max_new(rows[0], max_new_tokens, self.model.config.max_target_positions)
        steps = StepDecoder(self.model, cross, [w for w in windows for _ in range(width)],
                            prefix + max_new, spare=DRAFT_TOKENS)
        hidden = steps.step(torch.tensor(rows, device=enc.device))
        sot = rows[0].index(self.tok.sot)  # after the previous text, when prompted with it
        logits = steps.logits(hidden[:, [sot, prefix - 1]])  # no projection of previous text
        no_speech = self._no_speech_probs(logits[::width, 0])
        if temperature == 0.0 and beam_size > 1:
            finals = self._beam(logits[:, -1], steps, rows, prefix, n, beam_size, max_new)
        else:
            finals = self._sample(logits[:, -1], steps, rows, prefix, n, width, temperature, max_new)
        out = []
        for i, (tokens, sum_logprob, truncated) in enumerate(finals):
            text = self.tokenizer.decode([t for t in tokens if t < self.tok.eot])
            out.append(Decoded(tokens=tokens, avg_logprob=sum_logprob / (len(tokens) + 1),
                               compression_ratio=compression_ratio(text),
                               no_speech_prob=no_speech[i], temperature=temperature,
                               truncated=truncated))
        return out

    def _no_speech_probs(self, sot_logits: torch.Tensor) -> list[float]:
        if self.tok.no_speech is None:
            return [0.0] * sot_logits.shape[0]
        return sot_logits.softmax(-1)[:, self.tok.no_speech].tolist()

    def _sample(self, logits, steps, rows, prefix, n, width, temperature, max_new):
        """Greedy (temperature 0) or sampled decoding; returns the best candidate of each item.

        A row caught in a repetition loop is fed the loop's next tokens as a draft with its
        last one, and keeps those the model then picks itself (see `_draft`): one decoder
        pass instead of one a token. Each token is still picked from the model's logits by
        the same rule, with the same random numbers, so the text is that of one-token steps
        (up to float rounding in the logits of a pass that feeds several tokens)."""
        count = len(rows)
        sum_lp = [0.0] * count
        done = [False] * count  # ended with end-of-text
        gens = None
        if temperature > 0:
            gens = [torch.Generator(device=logits.device).manual_seed(SAMPLING_SEED + k % width)
                    for k in range(count)]
        alive = list(range(count))  # the rows still decoding: the rows of the batch, in order
        logits, drafts = logits[:, None], [[] for _ in alive]  # each row's next-token logits
        while True:
            unread = self._pick(logits, drafts, alive, rows, prefix, temperature, gens, sum_lp)
            for k in alive:
                done[k] = rows[k][-1] == self.tok.eot
            still = [j for j, k in enumerate(alive)
                     if not done[k] and len(rows[k]) - prefix < max_new]
            if not still:
                break
            if any(unread):
                steps.take_back(unread)
            if len(still) < len(alive):
                # A finished row leaves the batch: the other candidates no longer run to max_new
                # beside one caught in a repetition loop, nor short windows beside a long one.
                steps.keep(still)
                alive = [alive[j] for j in still]
            drafts = [self._draft(rows[k][prefix:], max_new - (len(rows[k]) - prefix))
                      for k in alive]
            if 2 * sum(1 for d in drafts if d) < len(alive):  # padding would cost more
                drafts = [[] for _ in alive]
            width_now = 1 + max(len(d) for d in drafts)
            ids = [[rows[k][-1], *d, *[rows[k][-1]] * (width_now - 1 - len(d))]
                   for k, d in zip(alive, drafts, strict=True)]
            logits = steps.logits(steps.step(torch.tensor(ids, device=logits.device)))
        finals = []
        for i in range(n):
            cands = []
            for k in range(i * width, (i + 1) * width):
                tokens = _strip_eot(rows[k][prefix:], self.tok.eot)
                cands.append((sum_lp[k] / max(1, len(tokens)), tokens, sum_lp[k], not done[k]))
            best = max(cands, key=lambda c: c[0])  # length-normalized, as openai-whisper ranks
            finals.append((best[1], best[2], best[3]))
        return finals

    def _pick(self, logits, drafts, alive, rows, prefix, temperature, gens, sum_lp) -> list[int]:
        """Each row's next tokens from `logits` (rows, positions, vocabulary): the token after
        the last one fed, then, while it is the draft's next token, the token after that.
        Returns per row the fed draft tokens that were not kept."""
        unread = [0] * len(alive)
        picking = list(range(len(alive)))
        for p in range(logits.shape[1]):
            if not picking:
                break
            sub = [alive[j] for j in picking]
            logprobs = F.log_softmax(self._filter(logits[picking, p], [rows[k] for k in sub], prefix),
                                     dim=-1)
            if gens is None:
                picked = logprobs.argmax(-1)
            else:  # one generator a row: a row's samples do not depend on its batch
                probs = (logprobs / temperature).softmax(-1)
                picked = torch.cat([torch.multinomial(probs[j], 1, generator=gens[k])
                                    for j, k in enumerate(sub)])
            lps = logprobs.gather(1, picked[:, None])[:, 0].tolist()  # the step's one wait for the device
            going = []
            for j, k, token, lp in zip(picking, sub, picked.tolist(), lps, strict=True):
                sum_lp[k] += lp
                rows[k].append(token)
                if p < len(drafts[j]) and token == drafts[j][p] and token != self.tok.eot:
                    going.append(j)
                else:
                    unread[j] = logits.shape[1] - 1 - p
            picking = going
        return unread

    @staticmethod
    def _draft(tokens: list[int], room: int) -> list[int]:
        """The tokens a repetition loop writes next: if the last DRAFT_MATCH tokens occurred
        before, what followed them, copied on (the copy reads its own output, so a loop
        shorter than the draft repeats). At most DRAFT_TOKENS, and `room` - 1: a pass
        picks one token more than its draft."""
        limit = min(DRAFT_TOKENS, room - 1)
        if limit <= 0 or len(tokens) <= DRAFT_MATCH:
            return []
        tail = tokens[-DRAFT_MATCH:]
        for s in range(len(tokens) - DRAFT_MATCH - 1, -1, -1):
            if tokens[s:s + DRAFT_MATCH] == tail:
                copy = list(tokens)
                for src in range(s + DRAFT_MATCH, s + DRAFT_MATCH + limit):
                    copy.append(copy[src])
                return copy[len(tokens):]
        return []

    def _beam(self, logits, steps, rows, prefix, n, beam, max_new):
        """openai-whisper's beam search (patience 1): each item keeps `beam` open hypotheses
        and stops once it has `beam` finished ones."""
        eot = self.tok.eot
        sum_lp = [0.0] * len(rows)
        finished: list[dict[tuple[int, ...], float]] = [{} for _ in range(n)]
        for _ in range(max_new):
            logprobs = F.log_softmax(self._filter(logits, rows, prefix), dim=-1)
            top_lp, top_tok = logprobs.topk(beam + 1, dim=-1)
            top_lp, top_tok = top_lp.tolist(), top_tok.tolist()
            new_rows, new_lp, sources = [], [], []
            for i in range(n):
                scores: dict[tuple[int, ...], float] = {}
                origin: dict[tuple[int, ...], int] = {}
                for j in range(beam):
                    k = i * beam + j
                    for lp, tok in zip(top_lp[k], top_tok[k], strict=True):
                        seq = (*rows[k], tok)
                        if lp == NEG_INF or seq in scores:
                            continue
                        scores[seq], origin[seq] = sum_lp[k] + lp, k
                kept = []
                for seq in sorted(scores, key=scores.__getitem__, reverse=True):
                    if seq[-1] == eot:
                        if len(finished[i]) < beam:
                            finished[i][seq] = scores[seq]
                    else:
                        kept.append(seq)
                        if len(kept) == beam:
                            break
                while len(kept) < beam:  # keep the row count fixed; duplicates are harmless
                    kept.append(kept[-1] if kept else (*rows[i * beam], eot))
                for seq in kept:
                    new_rows.append(list(seq))
                    new_lp.append(scores.get(seq, NEG_INF))
                    sources.append(origin.get(seq, i * beam))
            rows, sum_lp = new_rows, new_lp
            if all(len(f) >= beam for f in finished):
                break
            steps.keep(sources)  # beams move within their item, hence within their window
            last = torch.tensor([r[-1] for r in rows], device=logits.device)[:, None]
            logits = steps.logits(steps.step(last))[:, -1]
        finals = []
        for i in range(n):
            truncated = not finished[i]
            pool = finished[i] or {tuple(rows[i * beam + j]): sum_lp[i * beam + j] for j in range(beam)}
            best = max(pool, key=lambda s: pool[s] / max(1, len(s) - prefix))
            finals.append((_strip_eot(list(best[prefix:]), eot), pool[best], truncated))
        return finals

    # -- openai-whisper's logit rules --------------------------------------------------------

    def _filter(self, logits: torch.Tensor, rows: list[list[int]], prefix: int) -> torch.Tensor:
        """Token suppression and the timestamp rules, applied to each row's next-token logits."""
        tok = self.tok
        tb = tok.timestamp_begin
        logits = logits + self._suppress
        for k, row in enumerate(rows):
            sampled = row[prefix:]
            if not sampled:  # the first token is a timestamp within MAX_INITIAL_TIMESTAMP_INDEX
                logits[k, :tb] = NEG_INF
                logits[k, tb + MAX_INITIAL_TIMESTAMP_INDEX + 1:] = NEG_INF
                continue
            if sampled[-1] == tok.eot:
                continue
            last_ts = sampled[-1] >= tb
            penult_ts = len(sampled) < 2 or sampled[-2] >= tb
            if last_ts:
                if penult_ts:
                    logits[k, tb:] = NEG_INF  # after a pair of timestamps: text (or the end)
                else:
                    logits[k, :tok.eot] = NEG_INF  # a timestamp closes a segment: no text now
            stamps = [t for t in sampled if t >= tb]
            if stamps:  # timestamps never decrease, and a segment has a non-zero length
                floor = stamps[-1] if last_ts and not penult_ts else stamps[-1] + 1
                logits[k, tb:floor] = NEG_INF
        logprobs = F.log_softmax(logits, dim=-1)
        ts_mass = logprobs[:, tb:].logsumexp(-1)
        text_max = logprobs[:, :tb].max(-1).values
        force = ts_mass > text_max  # a timestamp is likelier than any single text token
        if force.any():
            logits[force, :tb] = NEG_INF
        return logits


def _strip_eot(tokens: list[int], eot: int) -> list[int]:
    return tokens[:tokens.index(eot)] if eot in tokens else tokens

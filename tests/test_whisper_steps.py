"""The torch engine's own decoder loop (whisper_steps.py) against transformers' Whisper: the
same logits step by step whatever rows leave or move, and the same greedy and beam output as
transformers' `generate` on real speech."""

import pytest
import torch

from speechkit.media.ffmpeg import decode_audio
from speechkit.models.whisper_steps import StepDecoder, cross_states
from tests.test_transcribe import librivox

FRAMES = 30  # encoder frames of the small random model's windows


def _random_whisper():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=300, d_model=64, encoder_layers=1, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4,
                           encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=FRAMES,
                           max_target_positions=64, pad_token_id=0, bos_token_id=0, eos_token_id=0,
                           decoder_start_token_id=1)
    config._attn_implementation = "sdpa"  # as speechkit loads Whisper
    return WhisperForConditionalGeneration(config).eval()


def _reference(model, enc: torch.Tensor, windows: list[int], rows: list[list[int]]) -> torch.Tensor:
    """Each row's next-token logits from transformers' decoder over the row's whole sequence."""
    out = model.model.decoder(input_ids=torch.tensor(rows), encoder_hidden_states=enc[windows],
                              use_cache=False).last_hidden_state
    return model.proj_out(out[:, -1])


@pytest.mark.parametrize("width", [3, 6])  # 6: more rows than the projection's few-rows kernel
def test_step_logits_equal_transformers_decoder_as_rows_leave_and_move(width):
    model = _random_whisper()
    enc = torch.randn(2, FRAMES, 64)
    windows = [0] * width + [1] * (width - 1)  # windows with unequal numbers of rows
    rows = [[1, 2, 3] for _ in windows]
    gen = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        steps = StepDecoder(model, cross_states(model, enc), windows, 16)
        logits = steps.logits(steps.step(torch.tensor(rows)))[:, -1]
        for n in range(8):
            torch.testing.assert_close(logits, _reference(model, enc, windows, rows), rtol=1e-4, atol=1e-4)
            keep = list(range(len(rows)))
            if n == 2:  # rows leave, the first window's among them
                keep = [k for k in keep if k % 2]
            elif n == 4:  # beams move: rows swap and repeat
                keep = [1, 0, *keep[2:], 0]
            elif n == 6:  # the first window is done: only the second is read
                keep = [k for k in keep if windows[k] == 1]
            steps.keep(keep)
            windows = [windows[k] for k in keep]
            rows = [list(rows[k]) for k in keep]
            nxt = torch.randint(4, 300, (len(rows),), generator=gen)
            for row, t in zip(rows, nxt.tolist(), strict=True):
                row.append(t)
            logits = steps.logits(steps.step(nxt[:, None]))[:, -1]
    assert steps.windows == [1] * len(rows) and steps.cross[0][0].shape[0] == 1


def test_rows_fed_several_tokens_and_taking_some_back_match_transformers_decoder():
    """Draft tokens: a row fed several tokens after its first, then taking back those not
    kept, so that rows hold unequal numbers of tokens, still gets transformers' logits at
    every position it is fed, while rows leave and move."""
    model = _random_whisper()
    enc = torch.randn(2, FRAMES, 64)
    windows = [0, 0, 1]
    rows = [[1, 2, 3] for _ in windows]
    gen = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        steps = StepDecoder(model, cross_states(model, enc), windows, 24, spare=4)
        steps.step(torch.tensor(rows))
        for fed, back in [(4, [0, 2, 3]), (1, [0, 0, 0]), (3, [2, 0, 1]), (5, [1, 4])]:
            ids = torch.randint(4, 300, (len(rows), fed), generator=gen)
            logits = steps.logits(steps.step(ids))
            for p in range(fed):
                for r, (row, t) in enumerate(zip(rows, ids.tolist(), strict=True)):
                    expected = _reference(model, enc, [windows[r]], [row + t[:p + 1]])
                    torch.testing.assert_close(logits[r:r + 1, p], expected, rtol=1e-4, atol=1e-4)
            steps.take_back(back)
            rows = [row + t[:fed - b] for row, t, b in zip(rows, ids.tolist(), back, strict=True)]
            assert steps.held in (None, [len(r) for r in rows])
            if fed == 3:  # a row leaves and the others swap
                steps.keep([2, 0])
                windows, rows = [windows[2], windows[0]], [rows[2], rows[0]]
        with pytest.raises(ValueError, match="room"):
            steps.step(torch.full((len(rows), 20), 5))


@pytest.mark.slow
@pytest.mark.parametrize("beam_size", [1, 5])
def test_greedy_and_beam_search_decode_as_transformers_generate(whisper_base_torch, testdata,
                                                                beam_size):
    """At temperature 0 the torch engine's tokens are transformers' own `generate` tokens, with
    timestamps, for a batch of real recordings."""
    model = whisper_base_torch
    audios = [decode_audio(p) for p, _ in librivox(testdata, 3)]
    tok = model.decoder.tok
    with torch.inference_mode():
        ours = model.decoder.decode(model._encode(audios), [tok.prompt("en", "transcribe")] * 3,
                                    beam_size, 224, temperatures=(0.0,))
        theirs = model.model.generate(model.features(audios), language="en", task="transcribe",
                                      return_timestamps=True, num_beams=beam_size, do_sample=False,
                                      max_new_tokens=224)
    for d, seq in zip(ours, theirs.tolist(), strict=True):
        assert d.tokens and not d.truncated
        assert d.tokens == [t for t in seq if t != tok.eot]  # generate pads with end-of-text

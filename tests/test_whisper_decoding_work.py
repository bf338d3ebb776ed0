"""How much decoding work a Whisper window costs: counted (model calls, projected rows, tokens),
so a regression to per-step or per-candidate recomputation fails without timing anything."""

import pytest
import torch

from speechkit.media.ffmpeg import decode_audio
from tests.test_transcribe import librivox

FRAMES = 1500  # encoder output frames of one 30 s window


def _count_cross_key_rows(model) -> tuple[list[int], list]:
    """A counter of the encoder frames the decoder's cross-attention keys are computed for
    (all layers), and the hooks that feed it."""
    rows = [0]

    def count(_module, inputs, _output):
        rows[0] += inputs[0].shape[0] * inputs[0].shape[1]

    return rows, [layer.encoder_attn.k_proj.register_forward_hook(count)
                  for layer in model.model.model.decoder.layers]


@pytest.mark.slow
@pytest.mark.parametrize(("beam_size", "temperatures"), [(5, (0.0,)), (1, (0.2,))])
def test_cross_attention_keys_are_computed_once_per_window(whisper_base_torch, testdata,
                                                           beam_size, temperatures):
    """Beams and sampled candidates share their window's cross-attention keys and values."""
    model = whisper_base_torch
    audios = [decode_audio(p) for p, _ in librivox(testdata, 2)]
    enc = model._encode(audios)
    rows, hooks = _count_cross_key_rows(model)
    prompts = [model.decoder.tok.prompt("en", "transcribe")] * len(audios)
    try:
        with torch.inference_mode():
            out = model.decoder.decode(enc, prompts, beam_size, 224, temperatures=temperatures)
        layers = len(model.model.model.decoder.layers)
        assert rows[0] == layers * len(audios) * FRAMES  # not times the beams or candidates
        assert all(d.tokens and not d.truncated for d in out)
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.slow
def test_greedy_decoding_takes_one_decoder_call_per_token(whisper_base_torch, testdata):
    """One step for the prompt, then one per sampled token: the cache is reused across steps."""
    model = whisper_base_torch
    enc = model._encode([decode_audio(librivox(testdata, 1)[0][0])])
    calls = [0]

    def count(*_):
        calls[0] += 1

    hook = model.model.model.decoder.embed_tokens.register_forward_hook(count)  # once a step
    try:
        with torch.inference_mode():
            d = model.decoder.decode(enc, [model.decoder.tok.prompt("en", "transcribe")], 1, 224,
                                     temperatures=(0.0,))[0]
    finally:
        hook.remove()
    assert not d.truncated and calls[0] == 1 + len(d.tokens)


@pytest.mark.slow
def test_both_engines_decode_max_new_tokens_tokens(whisper_base, whisper_base_torch, testdata):
    """--max-new-tokens means new tokens on both engines (CTranslate2 halves its max_length)."""
    audio = decode_audio(librivox(testdata, 1)[0][0])
    for model in (whisper_base, whisper_base_torch):
        prompt = model.decoder.tok.prompt("en", "transcribe")
        with torch.inference_mode():
            d = model.decoder.decode(model._encode([audio]), [prompt], 1, 12, temperatures=(0.0,))[0]
        assert len(d.tokens) == 12 and d.truncated, (model.describe()["engine"], d.tokens)


@pytest.mark.slow
def test_a_finished_window_leaves_the_batch(whisper_base_torch, testdata):
    """Rows fed to the decoder: each window's prompt once, then one per token it sampled before
    its end; a short window does not run on beside a longer one."""
    model = whisper_base_torch
    enc = model._encode([decode_audio(p) for p, _ in librivox(testdata, 2)])
    rows = [0]

    def count(_module, args, _output):
        rows[0] += args[0].shape[0]  # the token ids of a step, a row each

    hook = model.model.model.decoder.embed_tokens.register_forward_hook(count)
    try:
        with torch.inference_mode():
            out = model.decoder.decode(enc, [model.decoder.tok.prompt("en", "transcribe")] * 2, 1, 224,
                                       temperatures=(0.0,))
    finally:
        hook.remove()
    lengths = [len(d.tokens) for d in out]
    assert lengths[0] != lengths[1] and not any(d.truncated for d in out)
    assert rows[0] == 2 + sum(lengths)


@pytest.mark.slow
def test_repetition_loops_are_decoded_a_draft_per_pass(whisper_base_torch, testdata, monkeypatch):
    """English read as Hebrew runs into repetition loops, at temperature 0 and sampled. Fed the
    loop's next tokens as drafts, the decoder gives the same tokens, scores and fallback in a
    third of the passes or fewer; an English row in the same batch is unchanged too."""
    import speechkit.models.whisper_torch as engine

    model = whisper_base_torch
    clips = librivox(testdata, 3)
    enc = model._encode([decode_audio(p) for p, _ in clips])
    tok = model.decoder.tok
    prompts = [tok.prompt("he", "transcribe"), tok.prompt("en", "transcribe"),
               tok.prompt("he", "transcribe")]
    passes = [0]

    def count(*_):
        passes[0] += 1

    hook = model.model.model.decoder.embed_tokens.register_forward_hook(count)
    runs = {}
    try:
        for drafts in (0, engine.DRAFT_TOKENS):
            monkeypatch.setattr(engine, "DRAFT_TOKENS", drafts)
            passes[0] = 0
            with torch.inference_mode():
                out = model.decoder.decode(enc, prompts, 1, 224, temperatures=(0.0, 0.2))
            runs[drafts] = out, passes[0]
    finally:
        hook.remove()
    (plain, plain_passes), (drafted, drafted_passes) = runs[0], runs[engine.DRAFT_TOKENS]
    assert [d.temperature for d in plain] == [0.2, 0.0, 0.2]  # the loops fell back
    for a, b in zip(plain, drafted, strict=True):
        assert a.tokens == b.tokens and a.temperature == b.temperature
        assert a.truncated == b.truncated
        assert a.avg_logprob == pytest.approx(b.avg_logprob, abs=1e-4)
    assert drafted_passes * 3 <= plain_passes, (drafted_passes, plain_passes)

"""What each family's own code does with a checkpoint, and speechkit does the same: the
checkpoint as the official runner saves it converts, and decoding settings are the official ones."""

from __future__ import annotations

import pytest
import torch

from speechkit.models.speechllm.generate import BEAM_4_28, GenerationSettings, generate
from speechkit.models.speechllm.importers.salmonn import convert_salmonn
from tests.test_salmonn_tiny import LLM_HIDDEN, beats_official, salmonn_official
from tests.test_salmonn_tiny import salmonn_parts as build_salmonn_parts

EOS_LIKE = 14  # a token the tiny LLM writes on these embeddings (32 tokens vs 21 early-stopped)


@pytest.fixture(scope="module")
def salmonn_parts(tmp_path_factory):
    return build_salmonn_parts(tmp_path_factory.mktemp("salmonn"))


def test_salmonn_runner_save_with_beats_shared_bias_copies_converts(salmonn_parts, tmp_path):
    """SALMONN's runner drops what does not require grad by named_parameters(), which names
    BEATs' shared relative position bias once (layer 0): layers 1.. stay in the file."""
    p = salmonn_parts
    bias = p["beats_state"]["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    copies = {f"beats.encoder.layers.{i}.self_attn.relative_attention_bias.weight": bias.clone()
              for i in range(1, p["beats_cfg"]["encoder_layers"])}
    assert copies  # the tiny BEATs has more than one layer
    torch.save({"model": {**p["state"], **copies}}, tmp_path / "runner.pth")
    done = convert_salmonn(tmp_path / "runner.pth", str(p["whisper"]), p["beats"], str(p["llm"]),
                           tmp_path / "out")
    assert set(copies) <= set(done.dropped)
    assert all("shared relative position bias" in done.dropped[k] for k in copies)


def test_salmonn_unknown_keys_are_refused_by_key_family(salmonn_parts, tmp_path):
    from speechkit.errors import SpeechkitError

    p = salmonn_parts
    whisper = {f"speech_encoder.layers.{i}.fc1.weight": torch.zeros(2, 2) for i in range(2)}
    torch.save({"model": {**p["state"], **whisper}}, tmp_path / "unfrozen.pth")
    with pytest.raises(SpeechkitError, match=r"key families speech_encoder\.layers\.\*\.fc1.*"
                                             r"freeze_whisper"):
        convert_salmonn(tmp_path / "unfrozen.pth", str(p["whisper"]), p["beats"], str(p["llm"]),
                        tmp_path / "out")


def _eos_prone_llm(parts):
    """The tiny SALMONN LLM and tokenizer, EOS made a near copy of a token it writes, so that
    beams finish at different steps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm = AutoModelForCausalLM.from_pretrained(parts["llm"]).eval()
    tok = AutoTokenizer.from_pretrained(parts["llm"])
    with torch.no_grad():
        head = llm.get_output_embeddings().weight
        head[tok.eos_token_id] = 0.97 * head[EOS_LIKE]
    return llm, tok


def test_beam_search_equals_the_official_generate_call_on_an_eos_prone_llm(salmonn_parts):
    """SALMONN and Llama-AVSR call generate(num_beams=...) with transformers' default
    early_stopping (False); True would end the search once num_beams hypotheses finish."""
    llm, tok = _eos_prone_llm(salmonn_parts)
    torch.manual_seed(0)
    embeds = torch.randn(7, LLM_HIDDEN) * 0.5
    ours = generate(llm, tok, [embeds], GenerationSettings(beam_size=4, max_new_tokens=60)).tokens[0]
    with torch.no_grad():
        official = llm.generate(inputs_embeds=embeds[None], attention_mask=torch.ones(1, 7, dtype=torch.long),
                                max_new_tokens=60, num_beams=4, do_sample=False, min_length=1,
                                length_penalty=1.0, eos_token_id=tok.eos_token_id,
                                pad_token_id=tok.pad_token_id)[0].tolist()
    official = official[:official.index(tok.eos_token_id)] if tok.eos_token_id in official else official
    assert ours == official and len(ours) == 31
    early = llm.generate(inputs_embeds=embeds[None], attention_mask=torch.ones(1, 7, dtype=torch.long),
                         max_new_tokens=60, num_beams=4, do_sample=False, early_stopping=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0].tolist()
    assert early != official  # the setting matters for this LLM: the test can tell them apart


@torch.inference_mode()
def _beam_search_transformers_4_28(llm, embeds: torch.Tensor, beams: int, max_new: int,
                                   eos: int) -> list[int]:
    """Beam search as SALMONN's transformers (4.28, BeamSearchScorer) runs it from
    inputs_embeds, early_stopping False: every hypothesis is scored sum / (1 + its tokens
    without EOS), the 1 being the placeholder id generate starts from; candidates are the best
    2 x beams, an EOS among the first `beams` of them finishes a hypothesis; the search stops
    when the worst finished score is at least the best candidate's over 1 + the tokens so far
    (the placeholder again), else at max_new, where the running beams are scored as they are.
    Plain and slow: every step recomputes every beam from the prompt, no cache."""
    table = llm.get_input_embeddings()
    running, finished = [([], 0.0)], []

    def finish(tokens: list[int], total: float) -> None:
        finished.append((total / (len(tokens) + 1), tokens))
        finished.sort(key=lambda f: -f[0])
        del finished[beams:]

    for step in range(max_new):
        candidates = []
        for tokens, total in running:
            x = torch.cat([embeds, table(torch.tensor(tokens, dtype=torch.long))])
            logp = torch.log_softmax(llm(inputs_embeds=x[None]).logits[0, -1].float(), -1)
            top = logp.topk(2 * beams)
            candidates += [(total + float(v), tokens, int(t)) for v, t in zip(*top, strict=True)]
        candidates = sorted(candidates, key=lambda c: -c[0])[:2 * beams]
        running = []
        for rank, (total, tokens, t) in enumerate(candidates):
            if t != eos:
                running.append((tokens + [t], total))
            elif rank < beams:
                finish(tokens, total)
            if len(running) == beams:
                break
        if len(finished) == beams and finished[-1][0] >= candidates[0][0] / (1 + step + 1):
            return finished[0][1]
    for tokens, total in running:
        finish(tokens, total)
    return finished[0][1]


def test_salmonn_beam_search_scores_cut_hypotheses_as_its_transformers_does(salmonn_parts,
                                                                          salmonn_model):
    """A hypothesis cut at max_new_tokens counts one more token in SALMONN's beam scores
    (transformers 4.28's placeholder id): on this EOS-prone LLM that picks a 12-token answer
    over a finished 9-token one, as SALMONN's code does."""
    from speechkit.models.base import DecodeOptions

    llm, tok = _eos_prone_llm(salmonn_parts)
    torch.manual_seed(2)
    embeds = torch.randn(7, LLM_HIDDEN) * 0.5
    official = _beam_search_transformers_4_28(llm, embeds, 4, 12, tok.eos_token_id)
    salmonn = GenerationSettings(beam_size=4, max_new_tokens=12, beam_rules=BEAM_4_28)
    plain = GenerationSettings(beam_size=4, max_new_tokens=12)
    assert generate(llm, tok, [embeds], salmonn).tokens[0] == official and len(official) == 12
    assert len(generate(llm, tok, [embeds], plain).tokens[0]) == 9  # the rule matters here
    assert salmonn_model.settings(DecodeOptions(task="asr")).beam_rules == BEAM_4_28


def test_salmonn_beam_search_stops_when_its_transformers_does(salmonn_parts):
    """4.28 stops a search when no candidate over 1 + its tokens (the placeholder id) can beat
    the worst finished hypothesis; newer transformers divide by the tokens alone and stop
    earlier. Here it stops after 28 tokens, where SALMONN's code goes on to 30 and keeps a
    cut hypothesis (SALMONN's parity run: a 126-token answer against the official 200)."""
    llm, tok = _eos_prone_llm(salmonn_parts)
    torch.manual_seed(7)
    embeds = torch.randn(7, LLM_HIDDEN) * 0.5
    official = _beam_search_transformers_4_28(llm, embeds, 4, 30, tok.eos_token_id)
    salmonn = GenerationSettings(beam_size=4, max_new_tokens=30, beam_rules=BEAM_4_28)
    assert generate(llm, tok, [embeds], salmonn).tokens[0] == official and len(official) == 30
    with torch.no_grad():  # what the installed transformers' beam search gives
        newer = llm.generate(inputs_embeds=embeds[None], attention_mask=torch.ones(1, 7, dtype=torch.long),
                             max_new_tokens=30, num_beams=4, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0].tolist()
    assert newer[:newer.index(tok.eos_token_id)] == official[:28]  # the rule matters here


def test_salmonn_beam_search_decodes_a_batch_as_one_item_at_a_time(salmonn_parts):
    """The 4.28 beam search on left-padded prompts of different lengths gives each item the
    ids it gets alone (cache reordered per beam, positions past the padding)."""
    llm, tok = _eos_prone_llm(salmonn_parts)
    torch.manual_seed(4)
    prompts = [torch.randn(n, LLM_HIDDEN) * 0.5 for n in (7, 4, 9)]
    settings = GenerationSettings(beam_size=4, max_new_tokens=20, beam_rules=BEAM_4_28)
    alone = [generate(llm, tok, [p], settings).tokens[0] for p in prompts]
    assert generate(llm, tok, prompts, settings).tokens == alone
    assert len({len(a) for a in alone}) > 1  # the items end at different steps


def test_salmonn_clips_under_a_second_are_padded_to_one_before_the_encoders(tmp_path):
    """SALMONN pads every clip to 1 s before Whisper and BEATs: a 0.6 s clip gives BEATs the
    tokens of 1 s of audio (the second half silence), not 0.6 s worth and zero rows."""
    import numpy as np

    from speechkit.models.speechllm.checkpoint import EncoderSpec
    from speechkit.models.speechllm.encoders import load_encoder
    from speechkit.models.speechllm.encoders.beats import read_beats_checkpoint, write_beats_dir
    from speechkit.models.speechllm.importers.salmonn import (
        SALMONN_MIN_S,
        salmonn_spec,
        split_salmonn_state,
    )
    from tests.test_speechllm_tiny import noise

    beats_official(tmp_path / "beats.pt")
    write_beats_dir(tmp_path / "dir", *read_beats_checkpoint(tmp_path / "beats.pt"))

    def encoder(min_s):
        return load_encoder(EncoderSpec(modality="beats", type="beats", source=str(tmp_path / "dir"),
                                        pad_window=True, min_s=min_s))

    clip = noise(0.6, 3)
    padded, n = encoder(SALMONN_MIN_S)([clip])
    by_hand, _ = encoder(0.0)([np.pad(clip, (0, 16000 - len(clip)))])
    short, _ = encoder(0.0)([clip])
    assert torch.equal(padded, by_hand)
    real = lambda x: int((x[0].abs().sum(-1) > 0).sum())  # noqa: E731
    assert real(padded) == 2 * real(short)  # 48 vs 24 BEATs tokens on the 50 Hz grid
    bridge = split_salmonn_state(salmonn_official(8, 8, 8, 1, 8)).bridge
    spec = salmonn_spec(bridge, _lora(), whisper="w", beats="b", llm="l",
                        whisper_dim=8, beats_dim=8, hidden=8, vocab=10)
    assert [e.min_s for e in spec.encoders] == [1.0, 1.0]


def _lora():
    from speechkit.models.speechllm.checkpoint import LoraSpec

    return LoraSpec(r=2, alpha=32.0, target_modules=["q_proj", "v_proj"])


@pytest.fixture(scope="module")
def salmonn_converted(salmonn_parts):
    p = salmonn_parts
    torch.save({"model": p["state"]}, p["root"] / "salmonn.pth")
    done = convert_salmonn(p["root"] / "salmonn.pth", str(p["whisper"]), p["beats"], str(p["llm"]),
                           p["root"] / "converted")
    return done, p["root"] / "converted"


@pytest.fixture(scope="module")
def salmonn_model(salmonn_converted):
    from speechkit.models.speechllm import load_speechllm

    return load_speechllm(str(salmonn_converted[1]), device="cpu")


def test_salmonn_vocabulary_has_the_official_pad_row(salmonn_parts, salmonn_model):
    """SALMONN adds "[PAD]" to Vicuna's tokenizer and resizes the embeddings (32001 rows); its
    checkpoint has no row for it: speechkit's is the mean row, the same on every load."""
    from transformers import AutoTokenizer

    base = len(AutoTokenizer.from_pretrained(salmonn_parts["llm"]))
    model = salmonn_model
    assert len(model.tokenizer) == base + 1 and model.tokenizer.convert_tokens_to_ids("[PAD]") == base
    for table in (model.llm.get_input_embeddings(), model.llm.get_output_embeddings()):
        assert table.weight.shape[0] == base + 1
        assert torch.allclose(table.weight[base], table.weight[:base].mean(0))


def test_salmonn_records_how_audio_departs_from_the_official_input(salmonn_converted):
    """Results say what SALMONN's own code would not do: downmixed channels (it keeps channel
    0), windows past 30 s (it cuts there), and its 1 s minimum."""
    from speechkit.models.speechllm.model import audio_input

    assert audio_input(salmonn_converted[0].spec) == {"channels": "downmix", "window_s": 30.0,
                                                      "min_s": 1.0}


@torch.inference_mode()
def test_salmonn_first_30_s_of_a_long_clip_are_the_official_input(salmonn_model):
    """Past 30 s SALMONN cuts and speechkit goes on in windows: the speech tokens of the first
    window are those of the clip cut at 30 s (to float rounding: the two windows of the long
    clip go through the encoders as one batch)."""
    from speechkit.models.base import audio_inputs
    from tests.test_speechllm_tiny import noise

    clip = noise(40.0, 5)
    long, n_long = salmonn_model.encode(audio_inputs([clip]))["audio"]
    cut, n_cut = salmonn_model.encode(audio_inputs([clip[:30 * 16000]]))["audio"]
    assert int(n_cut[0]) == 88 and int(n_long[0]) == 176  # 88 Q-Former windows per 30 s
    assert torch.allclose(long[0, :88], cut[0, :88], atol=1e-5, rtol=0)
    assert not torch.allclose(long[0, 88:], cut[0, :88], atol=1e-2)  # the rest is new audio


def test_wavllm_position_conv_saved_as_weight_g_and_weight_v_converts(tmp_path):
    """A final.pt written under torch < 2.1 names WavLM's weight-normed position conv
    weight_g/weight_v; it converts to the same WavLM as the parametrizations names."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from speechkit.models.speechllm.importers.wavllm import convert_wavllm
    from speechkit.models.speechllm.sources import builtin_llms
    from tests.wavllm_reference import component_dirs, wavllm_state

    dirs = component_dirs(tmp_path, builtin_llms()["smollm2-135m"]())
    state = wavllm_state(dirs, len(AutoTokenizer.from_pretrained(dirs["llm"])))
    new = ".pos_conv_embed.conv.parametrizations.weight.original"
    old = {k.replace(new + "0", ".pos_conv_embed.conv.weight_g").replace(
        new + "1", ".pos_conv_embed.conv.weight_v"): v for k, v in state.items()}
    assert sum(k.endswith(("weight_g", "weight_v")) for k in old) == 2
    out = {}
    for name, sd in (("new", state), ("old", old)):
        torch.save({"model": sd, "cfg": {"model": {"_name": "speechllm_model"}}}, tmp_path / f"{name}.pt")
        convert_wavllm(tmp_path / f"{name}.pt", tmp_path / name, whisper=dirs["whisper"],
                       wavlm=dirs["wavlm"], llm=dirs["llm"])
        out[name] = load_file(str(tmp_path / name / "wavlm" / "model.safetensors"))
    assert out["old"].keys() == out["new"].keys()
    assert all(torch.equal(out["old"][k], out["new"][k]) for k in out["new"])

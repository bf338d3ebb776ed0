"""What each family's own code does with a checkpoint, and speechkit does the same: the
checkpoint as the official runner saves it converts, and decoding settings are the official ones."""

from __future__ import annotations

import pytest
import torch

from speechkit.models.speechllm.generate import GenerationSettings, generate
from speechkit.models.speechllm.importers.salmonn import convert_salmonn
from tests.test_salmonn_tiny import beats_official, salmonn_official
from tests.test_speechllm_tiny import TINY_WHISPER, tiny_llm, tiny_whisper

LLM_HIDDEN, LLM_LAYERS, LLM_KV = 64, 2, 32
EOS_LIKE = 14  # a token the tiny LLM writes on these embeddings (32 tokens vs 21 early-stopped)


@pytest.fixture(scope="module")
def salmonn_parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("salmonn")
    cfg, beats = beats_official(root / "beats.pt")
    state = salmonn_official(TINY_WHISPER["d_model"], cfg["encoder_embed_dim"], LLM_HIDDEN,
                             LLM_LAYERS, LLM_KV)
    return {"root": root, "whisper": tiny_whisper(root / "whisper"), "llm": tiny_llm(root / "llm"),
            "beats": root / "beats.pt", "state": state, "beats_cfg": cfg, "beats_state": beats}


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


def test_beam_search_equals_the_official_generate_call_on_an_eos_prone_llm(salmonn_parts):
    """SALMONN and Llama-AVSR call generate(num_beams=...) with transformers' default
    early_stopping (False); True would end the search once num_beams hypotheses finish."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm = AutoModelForCausalLM.from_pretrained(salmonn_parts["llm"]).eval()
    tok = AutoTokenizer.from_pretrained(salmonn_parts["llm"])
    with torch.no_grad():  # EOS a near copy of a token it writes: beams finish at different steps
        head = llm.get_output_embeddings().weight
        head[tok.eos_token_id] = 0.97 * head[EOS_LIKE]
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

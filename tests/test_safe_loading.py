"""No foreign code runs: custom-code model dirs, paths that leave a checkpoint, pickles and
bad `speechkit.json` values are all refused by the loader, with the file and key named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from speechkit.errors import SpeechkitError
from speechkit.models.registry import RuntimeOptions, load_model
from speechkit.models.safe_load import load_weights
from speechkit.models.speechllm import load_speechllm, new_checkpoint, read_spec
from speechkit.models.speechllm.checkpoint import SPEC_FILE, WEIGHTS_FILE
from tests.test_speechllm_tiny import noise, tiny_llm, tiny_whisper

ROOT = Path(__file__).resolve().parents[1]
CPU = RuntimeOptions(device="cpu")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    return {"encoder": tiny_whisper(root / "whisper"), "llm": tiny_llm(root / "llm")}


@pytest.fixture(scope="module")
def ckpt(parts, tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "ck"
    new_checkpoint(out, audio_encoder=str(parts["encoder"]), llm=str(parts["llm"]),
                   lora_r=4, lora_alpha=8.0, template="salmonn")
    return out


def _copy(src: Path, dst: Path, change=None) -> Path:
    shutil.copytree(src, dst)
    if change is not None:
        data = json.loads((dst / SPEC_FILE).read_text())
        change(data)
        (dst / SPEC_FILE).write_text(json.dumps(data))
    return dst


def _with_custom_code(src: Path, dst: Path, config: str, key: str, value, marker: Path) -> Path:
    """A copy of a model dir whose `config` names a module that writes `marker` on import."""
    shutil.copytree(src, dst)
    module = _first_ref(value).split("--")[-1].rsplit(".", 1)[0]
    (dst / f"{module}.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    file = dst / config
    data = json.loads(file.read_text()) if file.is_file() else {}
    data[key] = value
    file.write_text(json.dumps(data))
    return dst


def _first_ref(value) -> str:
    if isinstance(value, str):
        return value
    items = value.values() if isinstance(value, dict) else value
    return next(_first_ref(v) for v in items if v)


def _wav(path: Path, seconds: float = 1.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((noise(seconds, 5) * 20000).astype("<i2").tobytes())
    return path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The speechkit CLI in a fresh process with stdin closed: a prompt could only hang."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "speechkit", *args], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def test_checkpoint_new_refuses_a_tokenizer_that_needs_custom_code(parts, tmp_path):
    marker = tmp_path / "MARKER"
    llm = _with_custom_code(parts["llm"], tmp_path / "llm", "tokenizer_config.json", "auto_map",
                            {"AutoTokenizer": [None, "evil_tok.EvilTokenizer"]}, marker)
    res = _cli("checkpoint", "new", "--audio-encoder", str(parts["encoder"]), "--llm", str(llm),
               "--out", str(tmp_path / "ck"), cwd=tmp_path)
    output = res.stdout + res.stderr
    assert res.returncode == 2, output
    assert "tokenizer_config.json: key 'auto_map'" in output and "evil_tok.py" in output
    assert "[y/N]" not in output and "Traceback" not in output
    assert not marker.exists() and not (tmp_path / "ck").exists()


def test_transcribe_refuses_a_checkpoint_whose_tokenizer_needs_custom_code(ckpt, parts, tmp_path):
    marker = tmp_path / "MARKER"
    tok = _with_custom_code(parts["llm"], tmp_path / "tok", "tokenizer_config.json", "auto_map",
                            {"AutoTokenizer": [None, "evil_tok.EvilTokenizer"]}, marker)
    ck = _copy(ckpt, tmp_path / "ck", lambda d: d["llm"].update(tokenizer=str(tok)))
    res = _cli("transcribe", str(_wav(tmp_path / "a.wav")), "--model", str(ck), "--out",
               str(tmp_path / "r.jsonl"), cwd=tmp_path)
    output = res.stdout + res.stderr
    assert res.returncode == 2, output
    assert f"{tok / 'tokenizer_config.json'}: key 'auto_map'" in output
    assert "[y/N]" not in output and not marker.exists()
    assert not (tmp_path / "r.jsonl").exists() or not (tmp_path / "r.jsonl").read_text().strip()


CUSTOM_CODE = [  # (part, file in its dir, key, value, key named in the error)
    ("llm", "config.json", "auto_map",
     {"AutoModelForCausalLM": "modeling_evil.EvilLM"}, "auto_map"),
    ("llm", "generation_config.json", "custom_pipelines",
     {"asr": {"impl": "pipe_evil.EvilPipeline"}}, "custom_pipelines"),
    ("encoder", "config.json", "auto_map", {"AutoConfig": "configuration_evil.EvilConfig"},
     "auto_map"),
    ("encoder", "preprocessor_config.json", "auto_map",
     {"AutoFeatureExtractor": "fe_evil.EvilExtractor"}, "auto_map"),
    ("encoder", "config.json", "encoder_config",
     {"auto_map": {"AutoModel": "someone/repo--hub_evil.EvilModel"}}, "encoder_config.auto_map"),
]


@pytest.mark.parametrize("part,config,key,value,named", CUSTOM_CODE)
def test_load_model_refuses_a_part_that_needs_custom_code(ckpt, parts, tmp_path, part, config,
                                                          key, value, named):
    marker = tmp_path / "MARKER"
    evil = _with_custom_code(parts[part], tmp_path / part, config, key, value, marker)

    def point(d):
        if part == "llm":
            d["llm"]["source"] = str(evil)
        else:
            d["encoders"][0]["source"] = str(evil)

    ck = _copy(ckpt, tmp_path / "ck", point)
    with pytest.raises(SpeechkitError, match=rf"{config}: key '{named}' asks to run"):
        load_model(str(ck), CPU)
    assert not marker.exists()


def test_load_model_refuses_a_whisper_dir_that_needs_custom_code(parts, tmp_path):
    marker = tmp_path / "MARKER"
    evil = _with_custom_code(parts["encoder"], tmp_path / "w", "config.json", "auto_map",
                             {"AutoModelForSpeechSeq2Seq": "modeling_evil.Evil"}, marker)
    with pytest.raises(SpeechkitError, match=r"config.json: key 'auto_map'.*modeling_evil.py"):
        load_model(str(evil), CPU)
    assert not marker.exists()


def test_lora_path_outside_the_checkpoint_is_refused(ckpt, tmp_path):
    shutil.copytree(ckpt / "lora", tmp_path / "ext_lora")
    ck = _copy(ckpt, tmp_path / "ck", lambda d: d["llm"]["lora"].update(path="../ext_lora"))
    with pytest.raises(SpeechkitError, match=r"llm.lora.path '../ext_lora' must be a relative "
                                             r"path inside the checkpoint"):
        load_model(str(ck), CPU)
    link = _copy(ckpt, tmp_path / "ck2", lambda d: d["llm"]["lora"].update(path="linked"))
    (link / "linked").symlink_to(tmp_path / "ext_lora", target_is_directory=True)
    with pytest.raises(SpeechkitError, match=r"llm.lora.path 'linked' leads outside"):
        load_model(str(link), CPU)
    shutil.rmtree(link / "lora")
    (link / "linked").unlink()
    (link / "linked").mkdir()
    (link / "linked" / "adapter_config.json").write_text(
        (tmp_path / "ext_lora" / "adapter_config.json").read_text())
    (link / "linked" / "adapter_model.safetensors").symlink_to(
        tmp_path / "ext_lora" / "adapter_model.safetensors")
    with pytest.raises(SpeechkitError, match=r"adapter_model.safetensors' leads outside"):
        load_model(str(link), CPU)


def _bump(file: Path) -> None:
    """Change one tensor; written beside and renamed, as a mapped file must not shrink."""
    state = {k: v.clone() for k, v in load_file(str(file)).items()}
    key = sorted(state)[0]
    state[key] = state[key] + 0.5
    save_file(state, str(file) + ".new")
    os.replace(str(file) + ".new", file)


def test_recorded_hash_covers_the_adapter_and_every_part_dir(ckpt, parts, tmp_path):
    llm, enc = shutil.copytree(parts["llm"], tmp_path / "llm"), shutil.copytree(
        parts["encoder"], tmp_path / "enc")

    def point(d):
        d["llm"]["source"], d["encoders"][0]["source"] = str(llm), str(enc)

    ck = _copy(ckpt, tmp_path / "ck", point)
    seen = [load_model(str(ck), CPU).describe()]
    for file in (ck / "lora" / "adapter_model.safetensors", llm / "model.safetensors",
                 enc / "model.safetensors"):
        _bump(file)
        seen.append(load_model(str(ck), CPU).describe())
    hashes = [d["sha256"] for d in seen]
    assert len(set(hashes)) == 4, hashes
    assert seen[1]["parts_sha256"]["llm.source"] == seen[0]["parts_sha256"]["llm.source"]
    assert seen[2]["parts_sha256"]["llm.source"] != seen[1]["parts_sha256"]["llm.source"]
    assert seen[3]["parts_sha256"]["encoders[0].source"] != seen[2]["parts_sha256"][
        "encoders[0].source"]


def test_relative_sources_are_found_beside_the_checkpoint_not_in_the_cwd(ckpt, parts, tmp_path,
                                                                         monkeypatch):
    def point(d):
        d["llm"]["source"] = "base-llm"

    ck = _copy(ckpt, tmp_path / "ck", point)
    shutil.copytree(parts["llm"], ck / "base-llm")
    monkeypatch.chdir(tmp_path)  # a "base-llm" here must not be what loads
    shutil.copytree(parts["llm"], tmp_path / "base-llm")
    _bump(tmp_path / "base-llm" / "model.safetensors")
    model = load_model(str(ck), CPU)
    assert model.describe()["llm"] == str((ck / "base-llm").resolve())
    monkeypatch.chdir(ck)
    assert load_model(".", CPU).describe()["sha256"] == model.describe()["sha256"]


def test_pickles_are_refused_with_our_own_advice(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": {"w": torch.zeros(1)}, "x": Evil()}, tmp_path / "bad.pth")
    with pytest.raises(SpeechkitError) as err:
        load_weights(tmp_path / "bad.pth")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'bad.pth'}: holds pickled Python objects (print)")
    assert "convert it to safetensors" in message and "\n" not in message
    assert "weights_only" not in message and "trust" not in message


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:-64])


def _pickle_in_place(file: Path) -> None:
    state = {k: v.clone() for k, v in load_file(str(file)).items()}
    file.unlink()
    torch.save(state, file)


BAD_FILES = [  # (file in the checkpoint, how it is spoiled, what the error says)
    (WEIGHTS_FILE, _truncate, "corrupt or truncated"),
    (WEIGHTS_FILE, _pickle_in_place, "a pickled torch file where safetensors belong"),
    ("lora/adapter_model.safetensors", _truncate, "corrupt or truncated"),
    ("lora/adapter_model.safetensors", _pickle_in_place, "a pickled torch file"),
    ("lora/adapter_config.json", lambda f: f.write_text(
        f.read_text().replace('"r": 4', '"r": 16')), "has r 16 but speechkit.json llm.lora"),
    (SPEC_FILE, lambda f: f.write_text(f.read_text()[:-20]), "invalid JSON"),
]


@pytest.mark.parametrize("name,spoil,says", BAD_FILES)
def test_damaged_checkpoint_files_are_refused_by_the_loader(ckpt, tmp_path, name, spoil, says):
    ck = _copy(ckpt, tmp_path / "ck")
    spoil(ck / name)
    with pytest.raises(SpeechkitError) as err:
        load_speechllm(str(ck))
    assert str(ck / name) in str(err.value) and says in str(err.value)


@pytest.mark.parametrize("part", ["encoder", "llm"])
def test_a_damaged_part_weights_file_is_named(ckpt, parts, tmp_path, part):
    damaged = shutil.copytree(parts[part], tmp_path / part)
    _truncate(damaged / "model.safetensors")

    def point(d):
        if part == "llm":
            d["llm"]["source"] = str(damaged)
        else:
            d["encoders"][0]["source"] = str(damaged)

    with pytest.raises(SpeechkitError, match=r"model.safetensors: not a valid safetensors file"):
        load_model(str(_copy(ckpt, tmp_path / "ck", point)), CPU)


def _set(path: str, value):
    """A change to speechkit.json: set (or delete, for DELETE) the value at a dotted path."""
    def change(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        if value is DELETE:
            del d[last]
        else:
            d[last] = value
    return change


DELETE = object()
BAD_SPECS = [  # (dotted path in speechkit.json, bad value, key the error names)
    ("version", "one", "version"),
    ("encoders", {}, "encoders"),
    ("encoders", [], "encoders"),
    ("encoders", DELETE, "encoders"),
    ("encoders.0.window_s", 0, "encoders[0].window_s"),
    ("encoders.0.window_s", -3.0, "encoders[0].window_s"),
    ("encoders.0.window_s", "30", "encoders[0].window_s"),
    ("encoders.0.window_s", float("nan"), "encoders[0].window_s"),
    ("encoders.0.dim", -5, "encoders[0].dim"),
    ("encoders.0.dim", 32.5, "encoders[0].dim"),
    ("encoders.0.layer_weights", "yes", "encoders[0].layer_weights"),
    ("encoders.0.source", 7, "encoders[0].source"),
    ("encoders.0.type", "lstm", "encoders[0].type"),
    ("encoders.0.windows", 30, "encoders[0].windows"),
    ("bridge", DELETE, "bridge"),
    ("bridge", [], "bridge"),
    ("bridge.out_dim", 0, "bridge.out_dim"),
    ("bridge.inputs", ["audio"], "bridge.inputs"),
    ("bridge.inputs.audio.in_dim", DELETE, "bridge.inputs.audio.in_dim"),
    ("bridge.inputs.audio.rate", 0, "bridge.inputs.audio.rate"),
    ("bridge.inputs.audio.rate", "4", "bridge.inputs.audio.rate"),
    ("bridge.inputs.audio.rate", 2.5, "bridge.inputs.audio.rate"),
    ("bridge.inputs.audio.hidden_dim", -1, "bridge.inputs.audio.hidden_dim"),
    ("bridge.inputs.audio.pooling", "max", "bridge.inputs.audio.pooling"),
    ("llm", DELETE, "llm"),
    ("llm.source", "", "llm.source"),
    ("llm.source", "random", "llm.config"),
    ("llm.vocab_size", -1, "llm.vocab_size"),
    ("llm.lora", [], "llm.lora"),
    ("llm.lora.r", 0, "llm.lora.r"),
    ("llm.lora.r", "8", "llm.lora.r"),
    ("llm.lora.alpha", -1, "llm.lora.alpha"),
    ("llm.lora.target_modules", "q_proj", "llm.lora.target_modules"),
    ("llm.lora.target_modules", [], "llm.lora.target_modules"),
    ("llm.lora.path", "/tmp/lora", "llm.lora.path"),
    ("prompt.tasks", ["asr"], "prompt.tasks"),
    ("prompt.tasks", {"asr": 5}, "prompt.tasks.asr"),
    ("prompt.system", 5, "prompt.system"),
    ("prompt.template", "alpaca", "prompt.template"),
    ("decode.beam_size", 0, "decode.beam_size"),
    ("decode.max_new_tokens", -1, "decode.max_new_tokens"),
    ("decode.stop", "</s>", "decode.stop"),
    ("decode.stop", [""], "decode.stop"),
    ("added_tokens", "<audio>", "added_tokens"),
    ("extra", 1, "extra"),
]


@pytest.mark.parametrize("path,value,key", BAD_SPECS, ids=[f"{p}={v!r}" for p, v, _ in BAD_SPECS])
def test_bad_spec_values_are_refused_by_the_loader_naming_the_key(ckpt, tmp_path, path, value,
                                                                  key):
    ck = _copy(ckpt, tmp_path / "ck", _set(path, value))
    with pytest.raises(SpeechkitError) as err:
        load_speechllm(str(ck))
    message = str(err.value)
    assert message.startswith(str(ck / SPEC_FILE)) and key in message, message
    assert "\n" not in message


def test_random_llm_with_an_unknown_architecture_is_refused_naming_the_key(ckpt, parts,
                                                                          tmp_path):
    def change(d):
        d["llm"].update(source="random", tokenizer=str(parts["llm"]),
                        config={"model_type": "no-such-arch"})

    with pytest.raises(SpeechkitError, match=r"llm.config.model_type 'no-such-arch'"):
        load_speechllm(str(_copy(ckpt, tmp_path / "ck", change)))


def test_a_spec_that_is_not_an_object_is_refused(ckpt, tmp_path):
    ck = _copy(ckpt, tmp_path / "ck")
    (ck / SPEC_FILE).write_text("[1, 2]")
    with pytest.raises(SpeechkitError, match=r"speechkit.json: expected a JSON object"):
        read_spec(ck)


def test_the_checkpoint_spec_round_trips_through_the_strict_reader(ckpt):
    spec = read_spec(ckpt)
    assert spec.llm.lora is not None and spec.llm.lora.r == 4
    assert spec.encoders[0].window_s == 30.0 and isinstance(spec.encoders[0].window_s, float)
    assert Path(spec.llm.source).is_absolute()  # new_checkpoint records where the part is

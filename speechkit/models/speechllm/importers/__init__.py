"""Released speech-LLM checkpoints (SALMONN, Llama-AVSR, WavLLM) mapped onto speechkit
checkpoints, one file per family. Every key of the source is mapped or reported; a mapping
that is not complete is refused."""

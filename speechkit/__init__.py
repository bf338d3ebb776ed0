"""speechkit: batch transcription and evaluation with speech large language models."""

__version__ = "0.1.0"

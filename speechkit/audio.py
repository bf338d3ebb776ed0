"""Audio constants every stage shares: media decodes to this, every model takes it."""

SAMPLE_RATE = 16000  # Hz; 16 kHz mono float32 in [-1, 1], what Whisper and the speech encoders take

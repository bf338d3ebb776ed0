"""Stream constants every stage shares: media decodes to these, every model takes them."""

SAMPLE_RATE = 16000  # Hz; 16 kHz mono float32 in [-1, 1], what Whisper and the speech encoders take
VIDEO_FPS = 25  # lip crops per second: the lip-reading protocol (LRS3, auto_avsr, Llama-AVSR)

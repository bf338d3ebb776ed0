"""The converter commands, one module per family; importing one registers it on `convert_app`."""
# One import line per family (each module adds its command to speechkit.commands.convert.convert_app).
from speechkit.commands import (  # noqa: E402
    convert_llama_avsr,  # noqa: F401
    convert_salmonn,  # noqa: F401
    convert_wavllm,  # noqa: F401
)

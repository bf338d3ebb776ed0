"""The converter commands, one module per family; importing one registers it on `convert_app`."""
# One import line per family (each module adds its command to speechkit.commands.convert.convert_app).
from speechkit.commands import convert_salmonn  # noqa: F401

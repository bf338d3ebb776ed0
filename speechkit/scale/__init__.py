"""Scale-out: the same transcribe or bench job on a Ray cluster (Ray Data).

The item list becomes a Ray dataset; media decoding runs in CPU tasks, the model in a pool of
actors (loaded once per worker), and the driver writes the results into the usual JSONL file
as they arrive. `ray` is an optional extra, imported only when a run asks for it.
"""

from __future__ import annotations

from speechkit.errors import SpeechkitError
from speechkit.scale.options import RUNNERS, ScaleOptions

__all__ = ["RUNNERS", "ScaleOptions", "require_ray"]

INSTALL_HINT = "pip install 'speechkit[ray]'"


def require_ray():
    """The `ray` module with Ray Data, or a SpeechkitError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the `data` extra: pyarrow, pandas)
    except ImportError as e:
        raise SpeechkitError(f"--runner ray needs Ray Data, which is not installed ({e.name or e}); "
                             f"install it with: {INSTALL_HINT}") from None
    return ray

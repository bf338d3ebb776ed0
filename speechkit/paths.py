"""Where speechkit keeps converted models and other caches."""

from __future__ import annotations

import os
from pathlib import Path


def speechkit_home() -> Path:
    """`$SPEECHKIT_HOME`, else `$XDG_CACHE_HOME/speechkit`, else `~/.cache/speechkit`."""
    if env := os.environ.get("SPEECHKIT_HOME"):
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "speechkit"


def models_dir() -> Path:
    return speechkit_home() / "models"

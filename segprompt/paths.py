"""Where segprompt keeps its files: one cache root for checkpoints, model folders and embeddings."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SEGPROMPT_CACHE`` if set, else the platform's user cache folder for ``segprompt``."""
    env = os.environ.get("SEGPROMPT_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("segprompt"))


__all__ = ["cache_root"]

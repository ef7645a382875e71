"""The machine's model cache: models converted once from what their packages ship (dequantized
checkpoints, distilled embeddings, exported arrays) and then loaded fast by every process."""

from __future__ import annotations

import os
from pathlib import Path


def model_cache_dir() -> Path:
    """``$SLUICE_MODEL_CACHE``, else ~/.cache/sluice/models."""
    return Path(os.environ.get("SLUICE_MODEL_CACHE") or Path.home() / ".cache" / "sluice" / "models").expanduser()

"""The machine's model cache: models converted once from what their packages ship (dequantized
checkpoints, distilled embeddings, exported arrays) and then loaded fast by every process."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def model_cache_dir() -> Path:
    """``$SLUICE_MODEL_CACHE``, else ~/.cache/sluice/models."""
    return Path(os.environ.get("SLUICE_MODEL_CACHE") or Path.home() / ".cache" / "sluice" / "models").expanduser()


def exported_arrays(name: str, sources: list[Path], arrays: Callable[[], dict[str, Any]]) -> Path:
    """``<cache>/<name>-<key>.npz``: the arrays ``arrays()`` reads out of a package's model, written
    once per machine. The key is the package files' names, sizes and modification times, so an
    upgraded package is exported again. Each writer writes its own temporary file and renames it:
    concurrent first uses never read half a file. Raises OSError where the cache cannot be written."""
    import hashlib

    import numpy as np

    key = hashlib.sha256(repr([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sources]).encode()).hexdigest()[:16]
    out = model_cache_dir() / f"{name}-{key}.npz"
    if not out.is_file():
        data = arrays()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **data)
        tmp.replace(out)
    return out

"""What every scorer returns, and the length-sorted batching the model scorers share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# In a model folder Sluice trained: which scorer kind reads it, its file and label
# ({"kind": "fasttext", "file": "model.bin", "label": "__label__hq", "lowercase": true}).
MODEL_CARD = "sluice_model.json"


def read_model_card(folder: str) -> dict | None:
    import json
    from pathlib import Path

    p = Path(folder) / MODEL_CARD
    return json.loads(p.read_text()) if p.is_file() else None


@dataclass
class Scores:
    score: np.ndarray  # float64 per document
    label: list[str | None]  # argmax label (classification heads), else None
    tokens: int  # tokens scored (after truncation)


def length_batches(lengths: np.ndarray, batch_tokens: int, max_batch_size: int) -> list[np.ndarray]:
    """Indices of documents, sorted by length, cut so that batch size × longest ≤ batch_tokens."""
    order = np.argsort(lengths, kind="stable")
    batches, cur, longest = [], [], 0
    for i in order:
        l = int(lengths[i])
        if cur and (max(longest, l) * (len(cur) + 1) > batch_tokens or len(cur) >= max_batch_size):
            batches.append(np.array(cur))
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, l)
    if cur:
        batches.append(np.array(cur))
    return batches

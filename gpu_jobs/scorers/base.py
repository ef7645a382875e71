"""What every scorer returns, and the length-sorted batching the model scorers share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

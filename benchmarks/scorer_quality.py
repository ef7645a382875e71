"""How well document quality scores agree with human judgement on real web pages.

    .venv/bin/python benchmarks/scorer_quality.py [--model DIR ...]

Data: the English pages of ../shared/data (trafilatura-eval pages, Readability sources, the HTML
responses of the WARC files), extracted with the pipeline's own extractor (cascade), with labels
in ``benchmarks/data/quality_labels.tsv``: 1 = coherent, informative text worth training on, 0 =
boilerplate, navigation, listings, fragments, error pages, spam. The labels are one reader's, made
once before any scorer was tuned; ambiguous pages were left unlabelled.

Prints the ROC-AUC (with a bootstrap 95% interval), on every labelled document and on those the
`filtered` stage keeps (the regime a `quality` score works in), of:
* every single signal ``builtin:`` formulas may use, in its filter rule's direction (a drop of the
  default score shows up beside the signal that moved);
* ``builtin:signals-v1``, the default ``quality`` score;
* the classifiers that ``quality_classifier`` trains on a crawl with no reference corpus, on
  signals pseudo-labels from the unlabelled pool of the same pages (they never see a human label):
  fastText (the CPU default) and a MiniLM logistic head (the CUDA default), alone and averaged with
  signals-v1 in logit space;

and, for every scorer, documents per second on one CPU core (torch and fastText on one thread).
* any HF sequence classifier given with ``--model`` (e.g. a registered `sluice-quality` version).
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
LABELS = ROOT / "benchmarks" / "data" / "quality_labels.tsv"

from gpu_jobs.scorers.signals import DIRECTIONS, SignalScorer, detect_language, measure  # noqa: E402
from gpu_jobs.train_classifier import roc_auc  # noqa: E402
from documents.extract import ExtractOptions, Extractor  # noqa: E402
from documents.quality_rules import STOP_WORDS, words_of  # noqa: E402


def html_pages():
    """(id, html bytes) of every page the labels may refer to."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    for p in sorted((SHARED / "html" / "trafilatura-eval" / "pages").glob("*.html.gz")):
        yield p.name[: -len(".html.gz")], gzip.decompress(p.read_bytes())
    for d in sorted((SHARED / "html" / "readability").iterdir()):
        if (d / "source.html.gz").exists():
            yield f"rd/{d.name}", gzip.decompress((d / "source.html.gz").read_bytes())
    for w in sorted((SHARED / "warc").rglob("*.warc*")):
        if w.name.endswith((".wet.gz", ".wat.gz")):
            continue
        with open(w, "rb") as fh:
            try:
                for k, r in enumerate(ArchiveIterator(fh, record_types=WarcRecordType.response, parse_http=True)):
                    if "html" in ((r.http_headers.get("Content-Type") or "") if r.http_headers else ""):
                        yield f"warc/{w.name}/{k}", r.reader.read()
            except Exception:  # the deliberately truncated file ends early; its earlier records count
                pass


def read_labels() -> dict[str, int]:
    labels = {}
    for line in LABELS.read_text().splitlines():
        if line and not line.startswith(("#", "id\t")):
            k, v = line.split("\t")
            labels[k] = int(v)
    return labels


def english_documents(only: set[str] | None = None) -> dict[str, str]:
    """id → extracted text of the pages identified as English (of the ``only`` ids, if given)."""
    ex = Extractor(ExtractOptions())
    out = {}
    for doc_id, html in html_pages():
        if only is not None and doc_id not in only:
            continue
        try:
            text = ex.extract_with_path(html, None)[0].strip()
        except Exception:
            continue
        if text and detect_language(text) == "en":
            out[doc_id] = text
    return out


def filter_survivors(texts: dict[str, str]) -> set[str]:
    """The ids whose extracted text passes the `filtered` stage's rules after extraction, default
    options (the team's held-out AUCs are measured on such survivors)."""
    from documents.rules import Doc, DocumentFilter, FilterOptions

    rules = [a for a in DocumentFilter(FilterOptions()).active if a[0].key not in ("url", "extract")]
    out = set()
    for k, text in texts.items():
        doc = Doc({})
        doc.text = text
        if not any(rule.apply(doc, o, state) for rule, o, state in rules):
            out.add(k)
    return out


def bootstrap_auc(y: np.ndarray, s: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            vals.append(roc_auc(y[i], s[i]))
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def pseudo_label_classifier(pool: list[str], workdir: Path, kind: str) -> Path:
    """quality_classifier's no-reference path, run on the pool: signals pseudo-labels; ``kind``
    fasttext (the CPU default) or hf (MiniLM head, the CUDA default)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gpu_jobs.options import ClassifierTraining
    from gpu_jobs.train_classifier import run

    pq.write_table(pa.table({"text": pool}), workdir / "pool.parquet")
    out = workdir / f"model-{kind}"

    class Log:
        info = warning = staticmethod(lambda m: print(f"  [train] {m}", file=sys.stderr))

    run({"backbone": ClassifierTraining().backbone, "options": ClassifierTraining(model_kind=kind).model_dump(), "positives_path": None,
         "labelled_path": None, "negative_files": [str(workdir / "pool.parquet")], "output_dir": str(out)}, Log, lambda s: None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], help="an HF sequence-classification model folder to compare")
    ap.add_argument("--no-classifier", action="store_true", help="skip training the pseudo-label classifier")
    args = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: this benchmark needs ../shared/data")
    labels = read_labels()
    docs = english_documents()
    missing = sorted(set(labels) - set(docs))
    if missing:
        print(f"warning: {len(missing)} labelled pages were not extracted as English: {missing[:5]}", file=sys.stderr)
    ids = [k for k in labels if k in docs]
    texts = [docs[k] for k in ids]
    y = np.array([labels[k] for k in ids])
    print(f"{len(ids)} labelled English documents ({int(y.sum())} positive, {int((1 - y).sum())} negative); "
          f"unlabelled pool {len(docs)} documents")

    survivors = filter_survivors(dict(zip(ids, texts)))
    kept = np.array([k in survivors for k in ids])
    print(f"{int(kept.sum())} of them pass the `filtered` stage's rules ({int(y[kept].sum())} positive)")
    sig = [measure(t, "en") for t in texts]
    rows: dict[str, np.ndarray] = {
        f"  {n} ({'+' if d > 0 else '-'})": d * np.array([s[n] for s in sig]) for n, d in DIRECTIONS.items()}
    rows["  stop-word ratio (Gopher's 8 words) (+)"] = np.array([
        sum(w.lower() in STOP_WORDS for w in ws) / max(1, len(ws)) for ws in map(words_of, texts)])
    speed: dict[str, float] = {}

    def timed(name: str, fn, repeat: int = 1) -> np.ndarray:
        """Scores, and documents per second on one core (the scorer pinned to one thread)."""
        t0 = time.perf_counter()
        for _ in range(repeat):
            out = fn()
        speed[name] = repeat * len(texts) / (time.perf_counter() - t0)
        return out

    import torch

    from gpu_jobs.scorers.hf import HFClassifier

    torch.set_num_threads(1)
    signals = timed("builtin:signals-v1 (default `quality`)", lambda: SignalScorer().score(texts).score)
    rows["builtin:signals-v1 (default `quality`)"] = signals

    def lg(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    if not args.no_classifier:
        from gpu_jobs.scorers.fasttext import FastTextClassifier

        with tempfile.TemporaryDirectory() as tmp:
            ft = FastTextClassifier(str(pseudo_label_classifier(list(docs.values()), Path(tmp), "fasttext") / "model.bin"))
            name = "fastText on signals pseudo-labels (`classifier`, CPU)"
            rows[name] = timed(name, lambda: ft.score(texts).score, repeat=20)
            hf = HFClassifier(str(pseudo_label_classifier(list(docs.values()), Path(tmp), "hf")), max_length=256, device="cpu")
            name = "MiniLM head on signals pseudo-labels (`classifier`, CUDA)"
            rows[name] = timed(name, lambda: hf.score(texts, batch_tokens=16384, max_batch_size=64).score)
        for kind in ("fastText", "MiniLM"):
            clf = next(v for k, v in rows.items() if k.startswith(kind))
            rows[f"signals-v1 + {kind}, mean logit (ensemble)"] = (lg(signals) + lg(clf)) / 2
    for m in args.model:
        rows[f"--model {m}"] = HFClassifier(m, max_length=256, device="cpu").score(texts, batch_tokens=16384).score
    print(f"\n{'scorer':58s} {'ROC-AUC':>8s}   95% bootstrap   {'after filters':>15s}   95% bootstrap   docs/s per core")
    for name, s in sorted(rows.items(), key=lambda kv: kv[0].startswith("  ")):  # scorers first, then single signals
        lo, hi = bootstrap_auc(y, s)
        klo, khi = bootstrap_auc(y[kept], s[kept])
        rate = f"{speed[name]:>12,.0f}" if name in speed else f"{'':>12s}"
        print(f"{name:58s} {roc_auc(y, s):8.3f}   [{lo:.3f}, {hi:.3f}]   {roc_auc(y[kept], s[kept]):15.3f}   [{klo:.3f}, {khi:.3f}]   {rate}")


if __name__ == "__main__":
    main()

"""How well document scores agree with human judgement on real web pages, how fast they run, and
how they spread over a real crawl.

    .venv/bin/python benchmarks/scorer_quality.py [--model DIR ...] [--no-classifier] \
        [--davidson labeled_data.csv] [--stormfront DIR]

Quality (hand labels): every scorer's ROC-AUC with a bootstrap 95% interval, on the evaluation fold
of the labelled pages (those the shipped reference classifier ``shipped:quality-ref-v1`` did not
see: gpu_jobs/models/build_quality_ref.py trained on the other fold as unlabelled negatives), on
those of them the `filtered` stage keeps, and the paired bootstrap interval of each scorer's AUC
minus signals-v1's (the test the default `quality` score must pass to be replaced). Every scorer's
documents/s on one core, and its p10/p50/p90 over all English pages of ../shared/data (a real,
mixed crawl): a score collapsed to one end or with no spread is flagged by the classifier gate's
own rule (quality/suites.py).

Toxicity (``toxicity``, alt-profanity-check): ROC-AUC on labelled offensive/clean text from public
repositories, when given: ``--davidson``: t-davidson/hate-speech-and-offensive-language
``data/labeled_data.csv`` (tweets; offensive or hate = 1, neither = 0; MIT; note: alt-profanity-check
was trained on this set, so its figure is optimistic), ``--stormfront``: Vicomtech/hate-speech-dataset
(de Gibert et al. 2018, Stormfront forum sentences, hate = 1, noHate = 0; CC BY-SA 3.0 ES; not in its
training data). Skipped when absent.

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

from documents.extract import ExtractOptions, Extractor  # noqa: E402
from documents.quality_rules import STOP_WORDS, words_of  # noqa: E402
from gpu_jobs.scorers.signals import DIRECTIONS, SignalScorer, detect_language, measure  # noqa: E402
from gpu_jobs.train_classifier import roc_auc  # noqa: E402


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
            except Exception:  # noqa: BLE001 - the deliberately truncated file ends early; its earlier records count
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
        except Exception:  # noqa: BLE001 - a page the extractor cannot read is left out
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

    run(
        {
            "backbone": ClassifierTraining().backbone,
            "options": ClassifierTraining(model_kind=kind).model_dump(),
            "positives_path": None,
            "labelled_path": None,
            "negative_files": [str(workdir / "pool.parquet")],
            "output_dir": str(out),
        },
        Log,
        lambda s: None,
    )
    return out


def paired_delta(y: np.ndarray, a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of AUC(a) - AUC(b) over the same resampled documents."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            vals.append(roc_auc(y[i], a[i]) - roc_auc(y[i], b[i]))
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def toxicity_sets(args) -> dict[str, tuple[list[str], np.ndarray]]:
    import csv

    out = {}
    if args.davidson and Path(args.davidson).exists():
        with open(args.davidson, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        out["t-davidson tweets (offensive|hate vs neither; in its training data)"] = (
            [r["tweet"] for r in rows],
            np.array([int(r["class"] in ("0", "1")) for r in rows]),
        )
    if args.stormfront and (Path(args.stormfront) / "annotations_metadata.csv").exists():
        root = Path(args.stormfront)
        with open(root / "annotations_metadata.csv", newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r["label"] in ("hate", "noHate")]
        out["Vicomtech Stormfront sentences (hate vs noHate; unseen)"] = (
            [(root / "all_files" / f"{r['file_id']}.txt").read_text(encoding="utf-8", errors="replace") for r in rows],
            np.array([int(r["label"] == "hate") for r in rows]),
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], help="an HF sequence-classification model folder to compare")
    ap.add_argument("--no-classifier", action="store_true", help="skip training the pseudo-label classifiers")
    ap.add_argument("--davidson", help="t-davidson/hate-speech-and-offensive-language data/labeled_data.csv")
    ap.add_argument("--stormfront", help="a checkout of Vicomtech/hate-speech-dataset (annotations_metadata.csv, all_files/)")
    args = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: this benchmark needs ../shared/data")
    from gpu_jobs.models import QUALITY_REF, shipped_path
    from gpu_jobs.models.build_quality_ref import in_training_fold
    from gpu_jobs.scorers.fasttext import FastTextClassifier
    from gpu_jobs.scorers.toxicity import ToxicityScorer
    from quality.suites import classifier_reasons

    labels = read_labels()
    docs = english_documents()
    missing = sorted(set(labels) - set(docs))
    if missing:
        print(f"warning: {len(missing)} labelled pages were not extracted as English: {missing[:5]}", file=sys.stderr)
    ids = [k for k in labels if k in docs and not in_training_fold(k)]
    texts = [docs[k] for k in ids]
    y = np.array([labels[k] for k in ids])
    crawl = list(docs.values())
    print(
        f"{len(ids)} labelled English documents in the evaluation fold ({int(y.sum())} positive, {int((1 - y).sum())} negative; "
        f"the other {sum(1 for k in labels if k in docs and in_training_fold(k))} trained {QUALITY_REF} as unlabelled negatives); "
        f"real crawl for the distributions: {len(crawl)} English pages of ../shared/data"
    )

    survivors = filter_survivors(dict(zip(ids, texts)))
    kept = np.array([k in survivors for k in ids])
    print(f"{int(kept.sum())} of them pass the `filtered` stage's rules ({int(y[kept].sum())} positive)")
    sig = [measure(t, "en") for t in texts]
    rows: dict[str, np.ndarray] = {f"  {n} ({'+' if d > 0 else '-'})": d * np.array([s[n] for s in sig]) for n, d in DIRECTIONS.items()}
    rows["  stop-word ratio (Gopher's 8 words) (+)"] = np.array(
        [sum(w.lower() in STOP_WORDS for w in ws) / max(1, len(ws)) for ws in map(words_of, texts)]
    )
    speed: dict[str, float] = {}
    dist: dict[str, np.ndarray] = {}

    def timed(name: str, scorer, repeat: int = 1) -> np.ndarray:
        """Scores of the labelled pages, documents per second on one core (the scorer pinned to
        one thread), and the scores of the whole real crawl."""
        t0 = time.perf_counter()
        for _ in range(repeat):
            out = scorer(texts)
        speed[name] = repeat * len(texts) / (time.perf_counter() - t0)
        dist[name] = scorer(crawl)
        return out

    import torch

    from gpu_jobs.scorers.hf import HFClassifier

    torch.set_num_threads(1)
    SIG = "builtin:signals-v1 (default `quality`)"
    signals = rows[SIG] = timed(SIG, lambda t: SignalScorer().score(t).score)
    REF = f"shipped:{QUALITY_REF} (default `classifier`)"
    ref = FastTextClassifier(str(shipped_path(QUALITY_REF) / "model.ftz"))
    rows[REF] = timed(REF, lambda t: ref.score(t).score, repeat=20)

    def lg(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    def ensemble(a, b):
        return 1 / (1 + np.exp(-(lg(a) + lg(b)) / 2))

    ENS = f"signals-v1 + {QUALITY_REF}, mean logit (ensemble)"
    rows[ENS] = ensemble(signals, rows[REF])
    dist[ENS] = ensemble(dist[SIG], dist[REF])
    if not args.no_classifier:
        with tempfile.TemporaryDirectory() as tmp:
            ft = FastTextClassifier(str(pseudo_label_classifier(crawl, Path(tmp), "fasttext") / "model.bin"))
            name = "fastText on signals pseudo-labels (per crawl, CPU)"
            rows[name] = timed(name, lambda t: ft.score(t).score, repeat=20)
            hf = HFClassifier(str(pseudo_label_classifier(crawl, Path(tmp), "hf")), max_length=256, device="cpu")
            name = "MiniLM head on signals pseudo-labels (per crawl, CUDA)"
            rows[name] = timed(name, lambda t: hf.score(t, batch_tokens=16384, max_batch_size=64).score)
    for m in args.model:
        rows[f"--model {m}"] = HFClassifier(m, max_length=256, device="cpu").score(texts, batch_tokens=16384).score
    tox = ToxicityScorer()
    TOX = "toxicity: alt-profanity-check (default `toxicity`)"
    tox_scores = timed(TOX, lambda t: tox.score(t).score)

    print(f"\n== quality: hand labels, evaluation fold ({len(ids)} pages; {int(kept.sum())} after filters)")
    print(
        f"{'scorer':58s} {'ROC-AUC':>8s}   95% bootstrap   {'after filters':>13s}   95% bootstrap   "
        f"{'Δ vs signals-v1 [95%]':>24s}   docs/s/core"
    )
    for name, s in sorted(rows.items(), key=lambda kv: kv[0].startswith("  ")):  # scorers first, then single signals
        lo, hi = bootstrap_auc(y, s)
        klo, khi = bootstrap_auc(y[kept], s[kept])
        delta = ""
        if not name.startswith("  ") and name != SIG:
            dlo, dhi = paired_delta(y, s, signals)
            delta = f"{roc_auc(y, s) - roc_auc(y, signals):+.3f} [{dlo:+.3f}, {dhi:+.3f}]"
        rate = f"{speed[name]:>11,.0f}" if name in speed else f"{'':>11s}"
        print(
            f"{name:58s} {roc_auc(y, s):8.3f}   [{lo:.3f}, {hi:.3f}]   {roc_auc(y[kept], s[kept]):13.3f}   [{klo:.3f}, {khi:.3f}]   "
            f"{delta:>24s}   {rate}"
        )

    print(
        f"\n== score distribution on a real crawl ({len(crawl)} English pages of ../shared/data); "
        "flag = the classifier gate's distribution rules"
    )
    print(f"{'scorer':58s} {'p10':>6s} {'p50':>6s} {'p90':>6s} {'high':>6s}   flag")
    for name, d in dist.items():
        p10, p50, p90 = np.quantile(d, [0.1, 0.5, 0.9])
        share = float(np.mean(d >= 0.5))
        why = [r for r in classifier_reasons({"documents": len(d), "p10": p10, "p50": p50, "p90": p90, "high_share": share}, 0, 0)]
        print(f"{name:58s} {p10:6.3f} {p50:6.3f} {p90:6.3f} {share:6.1%}   {'COLLAPSED/FLAT: ' + '; '.join(why) if why else 'ok'}")

    print(f"\n== toxicity: labelled offensive/clean text ({TOX}, {speed[TOX]:,.0f} web pages/s per core)")
    print(
        f"   on the hand-labelled pages: p50 {np.median(tox_scores):.3f}, p90 {np.quantile(tox_scores, 0.9):.3f}, "
        f"{int((tox_scores >= 0.5).sum())} of {len(tox_scores)} labelled toxic"
    )
    sets = toxicity_sets(args)
    if not sets:
        print("   no labelled toxicity set given (--davidson, --stormfront): skipped")
    for name, (tt, ty) in sets.items():
        t0 = time.perf_counter()
        sc = tox.score(tt).score
        rate = len(tt) / (time.perf_counter() - t0)
        lo, hi = bootstrap_auc(ty, sc, n=200)
        print(
            f"   {name}: {len(tt):,} texts ({int(ty.sum()):,} offensive), ROC-AUC {roc_auc(ty, sc):.3f} [{lo:.3f}, {hi:.3f}], "
            f"{rate:,.0f} texts/s"
        )


if __name__ == "__main__":
    main()

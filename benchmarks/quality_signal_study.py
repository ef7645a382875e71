"""Can a fitted combination of the filter signals beat ``builtin:signals-v1``? Scored out of sample.

    .venv/bin/python benchmarks/quality_signal_study.py [--folds 10] [--repeats 5] [--train-on all|kept]

Two label sources, neither of them the team's held-out set:
* ``hand``: ``benchmarks/data/quality_labels.tsv`` (one reader's labels on the English pages of
  ../shared/data, see benchmarks/scorer_quality.py);
* ``pseudo``: structural labels made from the trafilatura-eval pages, in every language with a
  jusText stop list — a page's main content (Resiliparse's main-content extraction) is a positive,
  the rest of the same page (its lines that are not in the main content: menus, teasers, footers,
  comment widgets) a negative. No judgement enters them; they teach what boilerplate looks like in
  many languages and sites, where the hand labels mostly teach "short or fragmentary".

Each signal is standardised by the median and inter-quartile range over every document of both
sources, labels unseen. The model is a logistic regression on the clipped terms, each weight held
to the sign of ``DIRECTIONS`` (its filter rule's direction), L2-penalised; each source carries half
the total weight, each class half of its source's. The penalty is chosen by grouped
cross-validation (a page's documents, hand or pseudo, always share a fold) on the mean of the two
sources' AUCs. The out-of-fold AUCs are printed for both sources, on all documents and on those the
pipeline's filters keep (what a `quality` score sees), next to signals-v1, equal-weight subsets of
the strongest signals (Dawes' "improper" linear models, which often generalise better than fitted
ones on few labels) and every single signal; then the weights fitted on everything.

A formula that beats v1 in all four columns would become ``signals-v2`` (gpu_jobs/scorers/signals.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scorer_quality import SHARED, english_documents, filter_survivors, html_pages, read_labels  # noqa: E402

from gpu_jobs.scorers.signals import CLIP, DIRECTIONS, FORMULAS, detect_language, logit, measure  # noqa: E402
from gpu_jobs.train_classifier import roc_auc  # noqa: E402

NAMES = list(DIRECTIONS)
ABBREV = {
    "stop_word_ratio": "stop",
    "log10_words": "len",
    "line_punct_ratio": "punct",
    "short_line_ratio": "short",
    "c4_removed_frac": "c4",
    "newline_word_ratio": "newline",
}
CANDIDATES = [
    ("stop_word_ratio", "line_punct_ratio", "short_line_ratio", "c4_removed_frac", "newline_word_ratio"),
    ("stop_word_ratio", "log10_words", "line_punct_ratio", "short_line_ratio", "c4_removed_frac", "newline_word_ratio"),
    ("stop_word_ratio", "log10_words", "line_punct_ratio", "short_line_ratio", "c4_removed_frac"),
    ("stop_word_ratio", "log10_words", "line_punct_ratio", "c4_removed_frac"),
    ("stop_word_ratio", "log10_words", "line_punct_ratio", "newline_word_ratio"),
    ("stop_word_ratio", "line_punct_ratio", "c4_removed_frac", "newline_word_ratio"),
    ("stop_word_ratio", "log10_words", "line_punct_ratio"),
]
PENALTIES = (0.001, 0.003, 0.01, 0.03, 0.1)


def pseudo_documents() -> list[tuple[str, int, str]]:
    """(page id, label, text): each trafilatura-eval page's main content (1) and the rest of it (0)."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding
    from resiliparse.parse.html import HTMLTree

    out = []
    for page, html in html_pages():
        if "/" in page:  # Readability cases and WARC records: the hand labels cover them
            continue
        tree = HTMLTree.parse(bytes_to_str(html, detect_encoding(html)))
        full, main = (extract_plain_text(tree, main_content=m, preserve_formatting=True, list_bullets=False) for m in (False, True))
        main_lines = {l.strip() for l in main.splitlines() if l.strip()}
        rest = "\n".join(l.strip() for l in full.splitlines() if l.strip() and l.strip() not in main_lines)
        out += [(page, 1, main.strip()), (page, 0, rest)]
    return out


def standardise(rows: list[dict], centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Clipped terms; a missing stop-word ratio (no list for the language) is the centre."""
    raw = np.array([[np.nan if r[n] is None else r[n] for n in NAMES] for r in rows], np.float64)
    return np.nan_to_num(np.clip((raw - centre) / scale, -CLIP, CLIP))


def fit(X: np.ndarray, y: np.ndarray, weight: np.ndarray, penalty: float) -> tuple[np.ndarray, float]:
    """Sign-constrained, L2-penalised logistic regression (L-BFGS-B with bounds: no library offers
    sign constraints for a logistic model)."""
    from scipy.optimize import minimize

    weight = weight / weight.sum()
    signs = np.array([DIRECTIONS[n] for n in NAMES])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ w[:-1] + w[-1]
        p = 1.0 / (1.0 + np.exp(-z))
        g = weight * (p - y)
        return (
            float(np.sum(weight * (np.logaddexp(0, z) - y * z)) + penalty * np.sum(w[:-1] ** 2)),
            np.append(X.T @ g + 2 * penalty * w[:-1], g.sum()),
        )

    bounds = [(0, None) if s > 0 else (None, 0) for s in signs] + [(None, None)]
    w = minimize(loss, np.zeros(X.shape[1] + 1), jac=True, bounds=bounds, method="L-BFGS-B").x
    return w[:-1], float(w[-1])


def source_weights(y: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Half the weight to each source, half of a source's to each of its classes."""
    w = np.zeros(len(y))
    for s in np.unique(source):
        for c in (0, 1):
            m = (source == s) & (y == c)
            w[m] = 0.25 / max(1, m.sum())
    return w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-on", choices=["all", "kept"], default="all")
    args = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: this script needs ../shared/data")

    labels = read_labels()
    hand_docs = english_documents(set(labels))
    hand = [(k, labels[k], hand_docs[k], "en") for k in labels if k in hand_docs]
    pseudo = []
    for page, label, text in pseudo_documents():
        if len(text.split()) >= 5:
            lang = detect_language(text)
            pseudo.append((page, label, text, lang))
    kept_hand = filter_survivors({k: t for k, _, t, _ in hand})
    kept_pseudo = filter_survivors({f"{p}#{y}": t for p, y, t, _ in pseudo})
    docs = [(*d, "hand", d[0] in kept_hand) for d in hand] + [(*d, "pseudo", f"{d[0]}#{d[1]}" in kept_pseudo) for d in pseudo]
    # a document in a language without a stop list carries no stop-word term (as when scoring)
    rows = [measure(t, lang) for _, _, t, lang, _, _ in docs]
    pages = np.array([d[0] for d in docs])
    y = np.array([d[1] for d in docs], np.float64)
    source = np.array([d[4] for d in docs])
    kept = np.array([d[5] for d in docs])
    print(
        f"hand: {int((source == 'hand').sum())} documents ({int(y[source == 'hand'].sum())} positive), "
        f"{int(kept[source == 'hand'].sum())} kept by the filters; pseudo: {int((source == 'pseudo').sum())} documents "
        f"from {len(set(pages[source == 'pseudo']))} pages, {int(kept[source == 'pseudo'].sum())} kept",
        file=sys.stderr,
    )

    raw = np.array([[np.nan if r[n] is None else r[n] for n in NAMES] for r in rows], np.float64)
    centre = np.nanmedian(raw, 0)
    q1, q3 = np.nanpercentile(raw, [25, 75], 0)
    scale = np.maximum(q3 - q1, 1e-3)
    X = standardise(rows, centre, scale)
    weight = source_weights(y, source) * (kept if args.train_on == "kept" else 1)

    def out_of_fold(penalty: float) -> list[np.ndarray]:
        """Per repeat: every document's score from a model that never saw its page."""
        rng = np.random.default_rng(0)
        unique = np.array(sorted(set(pages)))
        out = []
        for _ in range(args.repeats):
            fold_of = dict(zip(unique, rng.permutation(len(unique)) % args.folds))
            fold = np.array([fold_of[p] for p in pages])
            s = np.empty(len(y))
            for f in range(args.folds):
                w, b = fit(X[fold != f], y[fold != f], weight[fold != f], penalty)
                s[fold == f] = X[fold == f] @ w + b
            out.append(s)
        return out

    def aucs(scores: list[np.ndarray]) -> list[float]:
        """Mean AUC over repeats: hand, hand kept, pseudo, pseudo kept."""
        cells = []
        for src in ("hand", "pseudo"):
            for only_kept in (False, True):
                m = (source == src) & (kept | (not only_kept))
                cells.append(float(np.mean([roc_auc(y[m], s[m]) for s in scores])))
        return cells

    results = {p: aucs(out_of_fold(p)) for p in PENALTIES}
    for p, a in results.items():
        print(f"penalty {p:<6}: out-of-fold AUC hand {a[0]:.3f} (kept {a[1]:.3f}), pseudo {a[2]:.3f} (kept {a[3]:.3f})", file=sys.stderr)
    best = max(PENALTIES, key=lambda p: (results[p][0] + results[p][2]) / 2)
    v1 = np.array([logit(r, FORMULAS["signals-v1"]) for r in rows])
    table = {
        "signals-v2 as fitted (out of fold)": results[best],
        "builtin:signals-v1": aucs([v1]),
        **{f"equal: {', '.join(ABBREV[n] for n in c)}": aucs([sum(DIRECTIONS[n] * X[:, NAMES.index(n)] for n in c)]) for c in CANDIDATES},
        **{
            f"  {n} ({'+' if DIRECTIONS[n] > 0 else '-'})": aucs([DIRECTIONS[n] * np.nan_to_num(raw[:, i], nan=centre[i])])
            for i, n in enumerate(NAMES)
        },
    }
    print(f"\nROC-AUC ({args.repeats} x {args.folds}-fold, grouped by page){'':10s} {'hand':>6s} {'kept':>6s} {'pseudo':>7s} {'kept':>6s}")
    for name, a in table.items():
        print(f"{name:50s} {a[0]:6.3f} {a[1]:6.3f} {a[2]:7.3f} {a[3]:6.3f}")

    w, b = fit(X, y, weight, best)
    print(f"\nfitted on all {len(y)} documents, penalty {best}: signal (centre, scale, weight); zero weights left out")
    for i, n in enumerate(NAMES):
        if abs(w[i]) >= 0.005:
            print(f"  {n:28s} ({centre[i]:.4g}, {scale[i]:.4g}, {w[i]:+.3f})")
    print(f"  bias {b:+.3f}")


if __name__ == "__main__":
    main()

"""Commands that need no lakehouse: a synthetic crawl with ground truth, and scoring a JSONL file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_sample_crawl(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sample_crawl import generate_crawl

    with tqdm(total=args.pages, desc="pages", unit="page", file=sys.stderr) as bar:
        summary = generate_crawl(
            args.out, args.pages, seed=args.seed, pages_per_file=args.pages_per_file, progress=bar.update, recrawl=args.recrawl
        )
    print(f"wrote {summary['files']} WARC files ({summary['warc_records']} records) to {Path(args.out).resolve()}")
    print("page kinds: " + ", ".join(f"{k}={v}" for k, v in summary["kinds"].items()))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score a JSONL of documents (field ``text``) outside the pipeline, e.g. to check a page or to
    evaluate a scorer against labels: each line comes back with ``score`` and ``score_label``."""
    import json

    from tqdm import tqdm

    from gpu_jobs.scorers import load_scorer

    scorer = load_scorer(args.kind, args.model, args.max_length, args.label, "auto")
    src = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    dst = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    rows = [json.loads(line) for line in src if line.strip()]
    with tqdm(total=len(rows), desc="scoring", unit="doc", file=sys.stderr) as bar:
        for i in range(0, len(rows), 256):
            batch = rows[i : i + 256]
            r = scorer.score([str(x.get("text") or "") for x in batch])
            for x, v, lab in zip(batch, r.score, r.label):
                x["score"], x["score_label"] = float(v), lab
                dst.write(json.dumps(x, ensure_ascii=False) + "\n")
            bar.update(len(batch))
    sys.stdout.flush()
    for fh in (src, dst):
        if fh not in (sys.stdin, sys.stdout):
            fh.close()
    return 0

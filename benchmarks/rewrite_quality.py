"""What the default rewriter does to the real pages a quality filter would discard, per format.

    .venv/bin/python benchmarks/rewrite_quality.py [--pages 4] [--styles article,qa,student,summary]
        [--max-new-tokens 160] [--max-input-words 120] [--batch 16] [--threads N] [--engine E] [--dump FILE]

Data: the English pages of ../shared/data (trafilatura-eval pages, Readability sources, the WARC
files' HTML responses), extracted with the pipeline's own extractor (as benchmarks/scorer_quality.py
does), scored with the built-in signals score (``quality``, builtin:signals-v1); the lowest-scoring
pages with at least 60 words are the candidates (what a `quality` filter would discard). Every page
is rewritten in every format by SmolLM2-135M-Instruct (the default ``rewrite.model``) with the
pipeline's own prompts, chat template and limits (the CPU caps by default), and judged by the
pipeline's fidelity gate (gpu_jobs/fidelity.py) with the default bounds.

Prints, per format: rewrites kept and rejected by reason; the mean score before and after of every
scorer that loads here (signals, the shipped classifier, toxicity), over the kept rewrites; the
share of kept rewrites with any invented number or entity (within the gate's tolerance); the source
facts kept (mean coverage); then new tokens/s of the pipeline's engine on CPU (``rewrite.engine``,
``auto``: llama.cpp for the GGUF model; ``--engine`` picks another), batched, against transformers'
plain batch-1 ``generate`` loop on the same prompts (ratio, the loop with ``rewrite.cpu_threads``).
The CPU speed levers one by one: benchmarks/rewrite_speed.py.
``--dump`` writes every rewrite with its verdict (JSONL) for reading, which is
how the gate's thresholds were calibrated (see the README's rewriting section).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared" / "data"

from gpu_jobs.fidelity import judge  # noqa: E402
from gpu_jobs.options import REWRITE_STYLES, RewriteOptions, ScoringOptions  # noqa: E402
from gpu_jobs.rewrite import bounds, prompt_template, source_text  # noqa: E402


def low_scoring_pages(n: int, min_words: int = 60) -> list[tuple[str, str, float]]:
    """(id, text, quality) of the ``n`` lowest-scoring English pages with at least ``min_words`` words."""
    from scorer_quality import english_documents

    from gpu_jobs.options import SIGNALS_MODEL
    from gpu_jobs.scorers.signals import SignalScorer

    docs = {k: v for k, v in english_documents().items() if len(v.split()) >= min_words}
    ids = sorted(docs)
    scores = SignalScorer(SIGNALS_MODEL).score([docs[i] for i in ids]).score
    ranked = sorted(zip(ids, scores), key=lambda x: (x[1], x[0]))
    return [(i, docs[i], float(s)) for i, s in ranked[:n]]


def scorers() -> list[tuple[str, object]]:
    """Every default scorer that loads without a lakehouse (the registry's per-crawl classifier does not)."""
    from gpu_jobs.scorers import load_scorer

    out = []
    for c in ScoringOptions().scorers:
        try:
            path = c.model
            if path.startswith("shipped:"):
                from gpu_jobs.models import shipped_path

                path = str(shipped_path(path))
            elif path.startswith("models:/"):
                print(f"  (scorer {c.name}: {c.model} needs a lakehouse registry; left out)")
                continue
            kind = c.kind
            card = Path(path) / "model_card.json"
            if card.is_file():
                meta = json.loads(card.read_text())
                kind, label = meta.get("kind", kind), c.label or meta.get("label")
            else:
                label = c.label
            out.append((c.name, load_scorer(kind, path, c.max_length, label, "cpu")))
        except Exception as e:  # noqa: BLE001 - a scorer another change is still adding: say so, measure the rest
            print(f"  (scorer {c.name}: {type(e).__name__}: {e}; left out)")
    return out


def tokens_per_s(gen, prompts: list[str], max_new: int, batch: int) -> tuple[float, list]:
    gen.batch_size = batch
    t = time.perf_counter()
    outs = gen.generate(prompts, max_new)
    el = time.perf_counter() - t
    return sum(g.new_tokens for g in outs) / el, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=4)
    ap.add_argument("--styles", default=",".join(REWRITE_STYLES))
    ap.add_argument("--max-new-tokens", type=int, default=RewriteOptions().cpu_max_new_tokens)
    ap.add_argument("--max-input-words", type=int, default=RewriteOptions().cpu_max_input_words)
    ap.add_argument("--batch", type=int, default=RewriteOptions().batch_size)
    ap.add_argument("--baseline-prompts", type=int, default=2, help="prompts for the batch-1 loop")
    ap.add_argument("--dump", type=Path)
    ap.add_argument("--threads", type=int, help="torch threads while generating (default: rewrite.cpu_threads)")
    ap.add_argument("--engine", default=RewriteOptions().engine, help="rewrite.engine for the rewrites (default: the pipeline's)")
    args = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: this benchmark reads real pages from ../shared/data")

    import torch

    from gpu_jobs.generators import HFGenerator
    from gpu_jobs.rewrite import engine, make_generator

    o = RewriteOptions(engine=args.engine, batch_size=args.batch, cpu_threads=args.threads or RewriteOptions().cpu_threads)
    threads = args.threads or o.cpu_threads
    gate = bounds(o)
    styles = args.styles.split(",")
    print(
        f"engine {engine(o, 'cpu')}; torch threads while generating: {threads or torch.get_num_threads()}; model {o.model}; "
        f"up to {args.max_input_words} source words, "
        f"{args.max_new_tokens} new tokens, batch {args.batch}"
    )
    t = time.perf_counter()
    pages = low_scoring_pages(args.pages)
    print(
        f"{len(pages)} lowest-scoring English pages (signals quality {min(p[2] for p in pages):.3f}..{max(p[2] for p in pages):.3f}), "
        f"extracted and scored in {time.perf_counter() - t:.0f} s"
    )
    t = time.perf_counter()
    gen = make_generator(o, None, args.max_new_tokens, "cpu")
    loop = HFGenerator(o.model, args.max_new_tokens, batch_size=1, device="cpu", threads=threads)
    print(f"models loaded ({type(gen).__name__}, and transformers for the batch-1 loop) in {time.perf_counter() - t:.1f} s")
    scs = scorers()

    jobs = []  # (page id, style, source, template)
    for pid, text, _ in pages:
        src = source_text(text, args.max_input_words)
        for st in styles:
            jobs.append((pid, st, src, prompt_template(o.prompt_version, st)))
    prompts = [tpl.replace("{document}", src) for _, _, src, tpl in jobs]
    rate, outs = tokens_per_s(gen, prompts, args.max_new_tokens, args.batch)
    print(f"{engine(o, 'cpu')}, batch {args.batch}, length-bucketed: {sum(g.new_tokens for g in outs)} new tokens, {rate:.1f} new tokens/s")
    base_prompts = prompts[: args.baseline_prompts]
    base, _ = tokens_per_s(loop, base_prompts, args.max_new_tokens, 1)
    print(
        f"transformers' batch-1 generate loop on {len(base_prompts)} of the same prompts: {base:.1f} new tokens/s; ratio {rate / base:.2f}x"
    )

    rows = []
    for (pid, st, src, tpl), g in zip(jobs, outs):
        v = judge(src, g.text, gate, tpl, g.finished)
        rows.append(
            {
                "page": pid,
                "style": st,
                "source": src,
                "output": g.text,
                "kept_text": v.text,
                "reason": v.reason,
                "evidence": json.loads(v.detail) if v.detail else None,
                "finished": g.finished,
                "new_tokens": g.new_tokens,
            }
        )
    before = {
        name: dict(zip([p[0] for p in pages], sc.score([source_text(p[1], args.max_input_words) for p in pages]).score)) for name, sc in scs
    }
    kept = [r for r in rows if r["reason"] is None]
    after = {name: sc.score([r["kept_text"] for r in kept]).score if kept else [] for name, sc in scs}
    for name in after:
        for r, s in zip(kept, after[name]):
            r.setdefault("after", {})[name] = float(s)

    names = [n for n, _ in scs]
    reasons = sorted({r["reason"] for r in rows if r["reason"]})
    head = (
        ["format", "n", "kept"]
        + [x.removeprefix("rewrite.") for x in reasons]
        + [f"{n} before→after" for n in names]
        + ["invented (kept)", "facts kept"]
    )
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for st in styles + ["all"]:
        rs = [r for r in rows if st == "all" or r["style"] == st]
        ks = [r for r in rs if r["reason"] is None]
        cells = [st, str(len(rs)), str(len(ks))] + [str(sum(r["reason"] == x for r in rs)) for x in reasons]
        for n in names:
            b = [before[n][r["page"]] for r in ks]
            a = [r["after"][n] for r in ks]
            cells.append(f"{statistics.mean(b):.3f}→{statistics.mean(a):.3f}" if ks else "-")
        inv = [r for r in ks if any(r["evidence"]["invented"][k] for k in ("numbers", "entities", "urls"))]
        cov = [r["evidence"]["coverage"] for r in ks if r["evidence"]["coverage"] is not None]
        cells += [f"{len(inv)}/{len(ks)}" if ks else "-", f"{statistics.mean(cov):.2f}" if cov else "-"]
        print("| " + " | ".join(cells) + " |")
    every = [r["evidence"] for r in rows if r["evidence"]]
    if every:
        print(
            "\nover every rewrite (kept or not), for calibration: invented_frac median "
            f"{statistics.median(e['invented_frac'] for e in every):.2f}, coverage median "
            f"{statistics.median([e['coverage'] for e in every if e['coverage'] is not None] or [0]):.2f}, length ratio median "
            f"{statistics.median(e['length_ratio'] for e in every):.2f}, unfinished {sum(not r['finished'] for r in rows)}/{len(rows)}"
        )
    if args.dump:
        args.dump.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"rewrites and verdicts: {args.dump}")


if __name__ == "__main__":
    main()

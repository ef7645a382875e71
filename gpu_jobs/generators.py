"""Text generation backends for the rewriter.

* ``HFGenerator`` — a causal LM in this process: prompts sorted by length and generated in batches
  with left padding (so every prompt ends where generation starts), greedy or sampled.
* ``CT2Generator`` — the same model run by CTranslate2, a C++ inference engine installed from PyPI
  (converted once per machine, int8 weights on CPU by default), opt-in: see ``RewriteOptions.engine``.
* ``LlamaCppGenerator`` — a GGUF model run by llama.cpp with many sequences per batch, the default
  engine on CPU (see ``RewriteOptions.engine``).
* ``OpenAIGenerator`` — any OpenAI-compatible server (vLLM, SGLang, TGI expose one): requests in
  flight up to ``concurrency``, each with a timeout, retried with exponential backoff on
  connection errors, 429 and 5xx. This is how rewriting runs at scale: the GPUs sit behind servers.
"""

from __future__ import annotations

import ctypes
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int
    finished: bool = True  # False: cut by the new-token limit before the model ended its answer


def chat_format(tokenizer, prompt: str) -> str:
    """The prompt as the model was trained to see it: its chat template, when it has one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return prompt


class HFGenerator:
    """A causal LM in this process. Prompts are wrapped in the model's chat template, sorted by
    token length and cut into batches of ``batch_size`` (length bucketing: little padding, so a
    batch's compute goes to real tokens), and generated with left padding.

    Speed levers (each measured alone and combined by ``benchmarks/rewrite_speed.py``): ``int8``
    (dynamic int8 quantization of the Linear layers, CPU only), ``static_cache`` (a preallocated KV
    cache, what ``torch.compile`` needs to avoid recompiling per step), ``compile``, ``threads``
    (CPU torch threads while generating). On CUDA the model runs in bf16 with SDPA attention."""

    def __init__(
        self,
        path: str,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 8,
        device: str = "auto",
        int8: bool = False,
        static_cache: bool = False,
        compile: bool = False,
        threads: int | None = None,
    ) -> None:
        import torch

        from gpu_jobs.runtime import load_causal_lm, pick_device

        self.device = pick_device(device)
        self.tokenizer, model = load_causal_lm(path, self.device)
        if int8 and self.device.type == "cpu":
            model = _int8(path, model)
        if compile:  # on a shallow copy: the process's shared model stays eager for other generators
            import copy

            compiled = torch.compile(model.forward, dynamic=not static_cache)
            model = copy.copy(model)
            model.forward = compiled
        self.model = model
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self.batch_size, self.static_cache = batch_size, static_cache
        # CPU only, set around each call (the process's own setting is restored): on cores other
        # processes also want, waiting OpenMP threads spin away the time slices their partners need.
        self.threads = threads if self.device.type == "cpu" else None
        self._torch = torch

    def format(self, prompt: str) -> str:
        return chat_format(self.tokenizer, prompt)

    def generate(self, prompts: list[str], max_new_tokens: int | None = None) -> list[Generation]:
        torch = self._torch
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._generate(prompts, max_new_tokens)
        finally:
            torch.set_num_threads(before)

    def _generate(self, prompts: list[str], max_new_tokens: int | None) -> list[Generation]:
        torch = self._torch
        limit = max_new_tokens or self.max_new_tokens
        texts = [self.format(p) for p in prompts]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        out: list[Generation | None] = [None] * len(texts)
        sampling = self.temperature > 0
        eos = self.tokenizer.eos_token_id
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            enc = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(self.device)
            torch.manual_seed(self.seed)
            extra = {"cache_implementation": "static"} if self.static_cache else {}
            with torch.inference_mode():
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=limit,
                    do_sample=sampling,
                    temperature=self.temperature if sampling else None,
                    top_p=self.top_p if sampling else None,
                    top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **extra,
                )
            new = gen[:, enc["input_ids"].shape[1] :].tolist()
            for row, i in enumerate(idx):
                toks = new[row]
                ended = eos in toks
                if ended:
                    toks = toks[: toks.index(eos)]
                toks = [t for t in toks if t != self.tokenizer.pad_token_id]
                out[i] = Generation(
                    self.tokenizer.decode(toks, skip_special_tokens=True).strip(),
                    len(ids[i]),
                    len(toks) + int(ended),
                    ended or len(toks) < limit,
                )
        return out  # type: ignore[return-value]


class CT2Generator:
    """A causal LM run by CTranslate2: the transformers checkpoint is converted once per machine
    (``runtime.ctranslate2_model``) and quantized at load to ``compute_type`` ("auto": int8 weights
    with float32 activations on CPU, bf16 on CUDA). Prompts are wrapped in the chat template and
    tokenized by the model's own tokenizer; CTranslate2 sorts them by length and cuts them into
    batches of ``batch_size``. Greedy when ``temperature`` is 0, else sampled with CTranslate2's
    seeded generator.

    Why a second engine: its int8 decoding is the llama.cpp-class lever that installs from PyPI;
    ``benchmarks/rewrite_speed.py`` measures it beside transformers on the same prompts (on these
    2 cores it was not worth its fidelity cost for SmolLM2-135M: ``RewriteOptions.engine``)."""

    def __init__(
        self,
        path: str,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 16,
        device: str = "auto",
        compute_type: str = "auto",
        threads: int | None = None,
    ) -> None:
        from gpu_jobs.runtime import ctranslate2_model, load_tokenizer, pick_device

        self.device = pick_device(device)
        model_dir, folder = ctranslate2_model(path)
        self.tokenizer = load_tokenizer(folder)
        if compute_type == "auto":
            compute_type = "bfloat16" if self.device.type == "cuda" else "int8_float32"
        self.compute_type = compute_type
        self.generator = _ct2_generator(model_dir, self.device.type, compute_type, (threads or 0) if self.device.type == "cpu" else 0)
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self.batch_size = batch_size

    def format(self, prompt: str) -> str:
        return chat_format(self.tokenizer, prompt)

    def generate(self, prompts: list[str], max_new_tokens: int | None = None) -> list[Generation]:
        import ctranslate2

        limit = max_new_tokens or self.max_new_tokens
        ids = self.tokenizer([self.format(p) for p in prompts], add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        sampling = self.temperature > 0
        ctranslate2.set_random_seed(self.seed)
        results = self.generator.generate_batch(
            [self.tokenizer.convert_ids_to_tokens(x) for x in ids],
            max_batch_size=self.batch_size,
            max_length=limit,
            sampling_topk=0 if sampling else 1,  # 0: the whole vocabulary, cut by top_p
            sampling_topp=self.top_p,
            sampling_temperature=self.temperature if sampling else 1.0,
            include_prompt_in_result=False,
            end_token=self.tokenizer.eos_token,
            return_end_token=True,
        )
        out = []
        for prompt_ids, r in zip(ids, results):
            toks = list(r.sequences_ids[0])
            ended = bool(toks) and toks[-1] == eos
            if ended:
                toks = toks[:-1]
            out.append(
                Generation(
                    self.tokenizer.decode(toks, skip_special_tokens=True).strip(),
                    len(prompt_ids),
                    len(toks) + int(ended),
                    ended or len(toks) < limit,
                )
            )
        return out


class LlamaCppGenerator:
    """A GGUF causal LM run by llama.cpp (llama-cpp-python), the default engine on CPU.

    The batch is llama.cpp's own: every prompt of a batch is a sequence with its own KV cache, the
    prompts are prefilled together and each decoding step runs one token of every unfinished
    sequence through the model at once, so the weights are read once per step, not once per
    sequence. The high-level ``Llama`` API generates one sequence at a time, hence the C API here.
    Prompts are wrapped in the chat template stored in the GGUF file and sorted by token length.
    The next token is the argmax of the logits (greedy), or drawn with temperature and top-p from a
    generator seeded by the engine's seed and the prompt, so a sampled rewrite does not depend on
    the order of the batch. ``weights``: see ``runtime.llama_cpp_model``."""

    def __init__(
        self,
        path: str,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 16,
        weights: str = "F16",
        threads: int | None = None,
    ) -> None:
        import os

        import llama_cpp

        from gpu_jobs.runtime import llama_cpp_model

        self._ll = llama_cpp
        _quiet_llama()
        self.file = llama_cpp_model(path, weights)
        self.model = _llama_model(self.file)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self.batch_size = batch_size
        self.threads = threads or os.cpu_count() or 1
        template = llama_cpp.llama_model_chat_template(self.model, None)
        self._template = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            special = {k: self._piece(getattr(llama_cpp, f"llama_vocab_{k}")(self.vocab)) for k in ("eos", "bos")}
            self._template = Jinja2ChatFormatter(template.decode(), eos_token=special["eos"], bos_token=special["bos"])
        self._ctx, self._ctx_cells = None, 0

    def __del__(self) -> None:
        if getattr(self, "_ctx", None) is not None:
            self._ll.llama_free(self._ctx)

    def format(self, prompt: str) -> str:
        if self._template is None:
            return prompt
        return self._template(messages=[{"role": "user", "content": prompt}]).prompt

    def tokenize(self, text: str) -> list[int]:
        ll, data = self._ll, text.encode()
        buf = (ll.llama_token * (len(data) + 8))()
        n = ll.llama_tokenize(self.vocab, data, len(data), buf, len(buf), False, True)  # the template's special tokens parsed
        return list(buf[:n])

    def _piece(self, token: int) -> str:
        buf = ctypes.create_string_buffer(256)
        n = self._ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def _text(self, tokens: list[int]) -> str:
        ll = self._ll
        arr = (ll.llama_token * max(len(tokens), 1))(*tokens)
        size = 8 * len(tokens) + 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = ll.llama_detokenize(self.vocab, arr, len(tokens), buf, size, True, False)
            if n >= 0:
                return buf.raw[:n].decode("utf-8", "replace")
            size = -n  # too small: llama.cpp says how many bytes the text needs

    def _context(self, cells_per_sequence: int):
        """A context for ``batch_size`` sequences of up to ``cells_per_sequence`` tokens each, kept
        while it is big enough. Each sequence has a KV cache of its own (not one shared cache): a
        decoding token then attends to its own sequence's cells, not to every sequence's."""
        ll = self._ll
        cells = self.batch_size * cells_per_sequence
        if self._ctx is None or self._ctx_cells < cells:
            if self._ctx is not None:
                ll.llama_free(self._ctx)
                self._ctx = None
            cp = ll.llama_context_default_params()
            cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = cells, _LLAMA_BATCH, _LLAMA_BATCH, self.batch_size
            cp.kv_unified, cp.no_perf = False, True
            cp.n_threads = cp.n_threads_batch = self.threads
            self._ctx = ll.llama_init_from_model(self.model, cp)
            if not self._ctx:
                raise RuntimeError(f"llama.cpp could not make a context of {cells} cells for {self.file}")
            self._ctx_cells = cells
        ll.llama_memory_clear(ll.llama_get_memory(self._ctx), True)
        return self._ctx

    def generate(self, prompts: list[str], max_new_tokens: int | None = None) -> list[Generation]:
        import numpy as np

        limit = max_new_tokens or self.max_new_tokens
        ids = [self.tokenize(self.format(p)) for p in prompts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[Generation | None] = [None] * len(ids)
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            rngs = [np.random.default_rng(_prompt_seed(self.seed, prompts[i])) for i in idx]
            for i, g in zip(idx, self._batch([ids[i] for i in idx], rngs, limit)):
                out[i] = g
        return out  # type: ignore[return-value]

    def _batch(self, seqs: list[list[int]], rngs: list, limit: int) -> list[Generation]:
        ll = self._ll
        span = max(len(s) for s in seqs) + limit
        ctx = self._context(-(-span // 256) * 256)  # rounded up: a context is reused by the next batches
        batch = ll.llama_batch_init(_LLAMA_BATCH, 0, 1)

        def decode(tokens: list[tuple[int, int, int, bool]]) -> None:  # (sequence, position, token, wants logits)
            batch.n_tokens = len(tokens)
            for b, (j, pos, tok, want) in enumerate(tokens):
                batch.token[b], batch.pos[b], batch.n_seq_id[b], batch.logits[b] = tok, pos, 1, want
                batch.seq_id[b][0] = j
            if ll.llama_decode(ctx, batch) != 0:
                raise RuntimeError(f"llama_decode failed on a batch of {len(tokens)} tokens ({self.file})")

        try:
            # Prefill: the prompts' tokens, _LLAMA_BATCH at a time; logits at each prompt's last token.
            prefill = [(j, p, t, p == len(s) - 1) for j, s in enumerate(seqs) for p, t in enumerate(s)]
            cur: dict[int, int] = {}
            for k in range(0, len(prefill), _LLAMA_BATCH):
                chunk = prefill[k : k + _LLAMA_BATCH]
                decode(chunk)
                cur.update({j: self._next(ctx, b, rngs[j]) for b, (j, _, _, want) in enumerate(chunk) if want})
            new: list[list[int]] = [[] for _ in seqs]
            ended = [False] * len(seqs)
            while cur:
                step = []
                for j, tok in cur.items():
                    if ll.llama_vocab_is_eog(self.vocab, tok):
                        ended[j] = True
                    else:
                        new[j].append(tok)
                        if len(new[j]) < limit:
                            step.append((j, len(seqs[j]) + len(new[j]) - 1, tok, True))
                if not step:
                    break
                decode(step)
                cur = {j: self._next(ctx, b, rngs[j]) for b, (j, _, _, _) in enumerate(step)}
        finally:
            ll.llama_batch_free(batch)
        return [
            Generation(self._text(new[j]).strip(), len(seqs[j]), len(new[j]) + int(ended[j]), ended[j] or len(new[j]) < limit)
            for j in range(len(seqs))
        ]

    def _next(self, ctx, row: int, rng) -> int:
        """The next token from the logits of the batch's ``row``."""
        import numpy as np

        logits = np.ctypeslib.as_array(self._ll.llama_get_logits_ith(ctx, row), shape=(self.n_vocab,))
        if self.temperature <= 0:
            return int(np.argmax(logits))
        z = logits.astype(np.float64) / self.temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        if self.top_p < 1.0:  # the smallest set of most likely tokens holding top_p of the mass
            o = np.argsort(-p)
            keep = o[: int(np.searchsorted(np.cumsum(p[o]), self.top_p)) + 1]
            q = np.zeros_like(p)
            q[keep] = p[keep]
            p = q / q.sum()
        return int(rng.choice(self.n_vocab, p=p))


_LLAMA_BATCH = 512  # tokens per llama_decode call (prefill chunks; llama.cpp's own default)
_LLAMA_MODELS: dict[str, object] = {}
_LLAMA_LOG: list = []


def _llama_log(level: int, text: bytes, _user) -> None:
    """llama.cpp's log, warnings and errors only: its load report is hundreds of lines per model.
    ggml's levels: 1 debug, 2 info, 3 warn, 4 error, 5 the continuation of the previous line."""
    if level != 5:
        _LLAMA_LOG[1] = level
    if _LLAMA_LOG[1] >= 3:
        sys.stderr.write(text.decode("utf-8", "replace"))


def _quiet_llama() -> None:
    """Route llama.cpp's log (loading, re-encoding) through ``_llama_log``, once per process."""
    import llama_cpp

    if not _LLAMA_LOG:
        _LLAMA_LOG[:] = [llama_cpp.llama_log_callback(_llama_log), 0]  # kept: llama.cpp holds the pointer
        llama_cpp.llama_log_set(_LLAMA_LOG[0], ctypes.c_void_p(0))


def _llama_model(file: str):
    """One loaded llama.cpp model per process and file (memory-mapped; contexts are per generator)."""
    import llama_cpp

    if file not in _LLAMA_MODELS:
        if not _LLAMA_MODELS:
            llama_cpp.llama_backend_init()
        model = llama_cpp.llama_model_load_from_file(file.encode(), llama_cpp.llama_model_default_params())
        if not model:
            raise RuntimeError(f"llama.cpp could not load {file}")
        _LLAMA_MODELS[file] = model
    return _LLAMA_MODELS[file]


def _prompt_seed(seed: int, prompt: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()[:8], "little")


_CT2: dict[tuple, object] = {}


def _ct2_generator(model_dir: str, device: str, compute_type: str, threads: int):
    """One loaded CTranslate2 model per process, folder, device, precision and thread count."""
    import ctranslate2

    key = (model_dir, device, compute_type, threads)
    if key not in _CT2:
        _CT2[key] = ctranslate2.Generator(model_dir, device=device, compute_type=compute_type, intra_threads=threads)
    return _CT2[key]


_INT8: dict[str, object] = {}


def quantize_int8(model):
    """Dynamic int8 quantization of every Linear layer of a copy of ``model`` (weights int8,
    activations quantized per batch): a quarter of fp32's weight bytes to stream per decoding step."""
    import copy

    import torch

    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def _int8(key: str, model):
    """``quantize_int8``, once per process and model, like the model itself."""
    if key not in _INT8:
        _INT8[key] = quantize_int8(model)
    return _INT8[key]


class OpenAIGenerator:
    def __init__(
        self,
        endpoint: str,
        model: str,
        api_key: str | None,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        concurrency: int = 16,
        timeout_s: float = 300.0,
        retries: int = 3,
    ) -> None:
        import requests

        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.body = {"model": model, "max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
        self.concurrency, self.timeout_s, self.retries = concurrency, timeout_s, retries
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def _one(self, prompt: str) -> Generation:
        import requests

        body = {**self.body, "messages": [{"role": "user", "content": prompt}]}
        delay = 1.0
        for attempt in range(self.retries + 1):
            try:
                r = self.session.post(self.url, json=body, headers=self.headers, timeout=self.timeout_s)
                if r.status_code == 429 or r.status_code >= 500:
                    raise requests.HTTPError(f"{r.status_code}: {r.text[:200]}")
                r.raise_for_status()
                data = r.json()
                usage = data.get("usage") or {}
                return Generation(
                    data["choices"][0]["message"]["content"].strip(),
                    int(usage.get("prompt_tokens", 0)),
                    int(usage.get("completion_tokens", 0)),
                )
            except (requests.ConnectionError, requests.Timeout, requests.HTTPError) as e:
                if attempt == self.retries or (
                    isinstance(e, requests.HTTPError)
                    and e.response is not None
                    and 400 <= e.response.status_code < 500
                    and e.response.status_code != 429
                ):
                    raise RuntimeError(f"{self.url}: request failed after {attempt + 1} attempts: {e}") from e
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def generate(self, prompts: list[str]) -> list[Generation]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, prompts))

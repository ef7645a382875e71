"""Text generation backends for the rewriter.

* ``HFGenerator`` — a causal LM in this process: prompts sorted by length and generated in batches
  with left padding (so every prompt ends where generation starts), greedy or sampled.
* ``CT2Generator`` — the same model run by CTranslate2, a C++ inference engine installed from PyPI
  (converted once per machine, int8 weights on CPU by default), opt-in: see ``RewriteOptions.engine``.
* ``OpenAIGenerator`` — any OpenAI-compatible server (vLLM, SGLang, TGI expose one): requests in
  flight up to ``concurrency``, each with a timeout, retried with exponential backoff on
  connection errors, 429 and 5xx. This is how rewriting runs at scale: the GPUs sit behind servers.
"""

from __future__ import annotations

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

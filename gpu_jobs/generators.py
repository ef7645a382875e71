"""Text generation backends for the rewriter.

* ``HFGenerator`` — a causal LM in this process: prompts sorted by length and generated in batches
  with left padding (so every prompt ends where generation starts), greedy or sampled.
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


class HFGenerator:
    def __init__(self, path: str, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                 batch_size: int = 8, device: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from gpu_jobs.runtime import inference_dtype, pick_device

        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=inference_dtype(self.device)).to(self.device).eval()
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self.batch_size = batch_size
        self._torch = torch

    def _format(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        return prompt

    def generate(self, prompts: list[str]) -> list[Generation]:
        torch = self._torch
        texts = [self._format(p) for p in prompts]
        lengths = [len(self.tokenizer(t)["input_ids"]) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        out: list[Generation | None] = [None] * len(texts)
        sampling = self.temperature > 0
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True).to(self.device)
            torch.manual_seed(self.seed)
            with torch.inference_mode():
                gen = self.model.generate(
                    **enc, max_new_tokens=self.max_new_tokens, do_sample=sampling,
                    temperature=self.temperature if sampling else None, top_p=self.top_p if sampling else None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = gen[:, enc["input_ids"].shape[1]:]
            for row, i in enumerate(idx):
                toks = new[row]
                n_new = int((toks != self.tokenizer.pad_token_id).sum())
                out[i] = Generation(self.tokenizer.decode(toks, skip_special_tokens=True).strip(), lengths[i], n_new)
        return out  # type: ignore[return-value]


class OpenAIGenerator:
    def __init__(self, endpoint: str, model: str, api_key: str | None, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0, concurrency: int = 16, timeout_s: float = 300.0, retries: int = 3) -> None:
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
                return Generation(data["choices"][0]["message"]["content"].strip(), int(usage.get("prompt_tokens", 0)),
                                  int(usage.get("completion_tokens", 0)))
            except (requests.ConnectionError, requests.Timeout, requests.HTTPError) as e:
                if attempt == self.retries or (isinstance(e, requests.HTTPError) and e.response is not None and 400 <= e.response.status_code < 500
                                               and e.response.status_code != 429):
                    raise RuntimeError(f"{self.url}: request failed after {attempt + 1} attempts: {e}") from e
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def generate(self, prompts: list[str]) -> list[Generation]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, prompts))

"""A small OpenAI-compatible chat-completions server on 127.0.0.1 serving a local causal LM, for
testing the rewriter's HTTP backend the way it talks to vLLM / SGLang / TGI."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalOpenAIServer:
    def __init__(self, model_path: str, delay_s: float = 0.0, fail_first: int = 0) -> None:
        from gpu_jobs.generators import HFGenerator

        self.model_path = model_path
        self.generators: dict[tuple, HFGenerator] = {}
        self.lock = threading.Lock()
        self.delay_s = delay_s
        self.fail_first = fail_first  # answer the first N requests with 503 (tests the retries)
        self.requests = 0
        self.authorizations: set[str | None] = set()  # the Authorization headers seen
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.authorizations.add(self.headers.get("Authorization"))
                with server.lock:
                    server.requests += 1
                    failing = server.requests <= server.fail_first
                if failing or not self.path.endswith("/chat/completions"):
                    self.send_response(503 if failing else 404)
                    self.end_headers()
                    return
                time.sleep(server.delay_s)
                key = (body.get("max_tokens", 64), body.get("temperature", 0.0))
                with server.lock:
                    gen = server.generators.get(key)
                    if gen is None:
                        gen = server.generators[key] = HFGenerator(server.model_path, max_new_tokens=key[0], temperature=key[1])
                    g = gen.generate([body["messages"][-1]["content"]])[0]
                payload = {
                    "id": "cmpl-local",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.new_tokens},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> LocalOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

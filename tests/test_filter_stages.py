"""URL filter, extraction, language ID and PII redaction, and the per-document pipeline."""

import random

import pytest

from documents.extract import ExtractOptions, Extractor, decode_html
from documents.language import LanguageIdentifier, LanguageOptions
from documents.pii import PiiOptions, redact
from documents.rules import DocumentFilter, FilterOptions
from documents.url_filter import UrlFilter, UrlFilterOptions
from sample_crawl import text as T
from sample_crawl.generator import _render


def test_url_filter_ut1_lists_and_banned_words(tmp_path):
    adult = tmp_path / "ut1" / "adult"
    adult.mkdir(parents=True)
    (adult / "domains").write_text("# comment\nbad-site.com\nexample.xxx\n")
    (adult / "urls").write_text("good-host.org/private/page.html\n")
    gambling = tmp_path / "ut1" / "gambling"
    gambling.mkdir()
    (gambling / "domains").write_text("casino-royal.net\n")
    f = UrlFilter(UrlFilterOptions(blocklist_dirs=[str(tmp_path / "ut1")], banned_words=["porn"], banned_subwords=["xxxvideo"]))
    assert f.check("https://bad-site.com/a") == ("url.blocked_domain", "bad-site.com")
    assert f.check("https://www.sub.bad-site.com/") == ("url.blocked_domain", "bad-site.com")
    assert f.check("https://notbad-site.com/") is None  # a suffix that is not a label boundary
    assert f.check("http://good-host.org/private/page.html") == ("url.blocked_url", "good-host.org/private/page.html")
    assert f.check("http://good-host.org/public/") is None
    assert f.check("https://casino-royal.net/x")[0] == "url.blocked_domain"
    assert f.check("https://a.com/free-porn-now") == ("url.banned_word", "porn")
    assert f.check("https://a.com/pornography-history") is None  # a word, not a substring
    assert f.check("https://a.com/myxxxvideos") == ("url.banned_subword", "xxxvideo")
    only_gambling = UrlFilter(UrlFilterOptions(blocklist_dirs=[str(tmp_path / "ut1")], categories=["gambling"]))
    assert only_gambling.check("https://bad-site.com/") is None and only_gambling.check("https://casino-royal.net/")


def test_url_filter_missing_list_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="blocklist"):
        UrlFilter(UrlFilterOptions(blocklist_dirs=[str(tmp_path / "nope")]))


def test_pii_redaction_counts_and_placeholders():
    text = (
        "Mail jane.doe@example.org or info@city-news.co.uk. The host 192.168.1.20 answered, "
        "then 2001:db8::8a2e:370:7334 did. Version 1.2.3 and 999.1.1.1 are not addresses. Ends at 10.0.0.1."
    )
    out, counts = redact(text, PiiOptions())
    assert counts == {"pii_emails": 2, "pii_ips": 3, "pii_phones": 0}
    assert "@" not in out and "192.168" not in out and "2001:db8" not in out and "10.0.0.1" not in out
    assert out.count("<EMAIL>") == 2 and out.count("<IP_ADDRESS>") == 3
    assert "1.2.3" in out and "999.1.1.1" in out and out.endswith("<IP_ADDRESS>.")
    phones, c = redact("Call +1 (555) 234-5678 today.", PiiOptions(phones=True))
    assert c["pii_phones"] == 1 and "555" not in phones
    assert redact(text, PiiOptions(enabled=False))[0] == text


def article_page(seed=1):
    rng = random.Random(seed)
    title, paras = T.article(rng)
    return _render("www.example.com", title, paras, rng), paras


@pytest.mark.parametrize("backend", ["resiliparse", "resiliparse_blocks", "trafilatura", "cascade"])
def test_extractors_keep_the_article_and_drop_boilerplate(backend):
    page, paras = article_page()
    text = Extractor(ExtractOptions(backend=backend)).extract(page, "utf-8")
    assert all(p[:60] in text for p in paras)
    for boiler in ("We use cookies", "All rights reserved", "Related stories", "Subscribe"):
        assert boiler not in text, (backend, boiler)


def test_charset_from_header_then_detection():
    html = "<html><body><p>Привет, мир! Это тестовая страница.</p></body></html>"
    cp1251 = html.encode("cp1251")
    assert "Привет" in decode_html(cp1251, "windows-1251")
    assert "Привет" in decode_html(cp1251, "bogus-charset")  # unknown charset: detected instead
    meta = ('<html><head><meta charset="euc-jp"></head><body><p>' + "日本語のテキストです。" * 20 + "</p></body></html>").encode("euc-jp")
    assert "日本語" in decode_html(meta, None)  # no HTTP charset: detected
    assert "日本語" in decode_html(meta, "euc-jp")


def test_language_identification_and_threshold():
    ident = LanguageIdentifier(LanguageOptions())
    rng = random.Random(3)
    en = " ".join(T.article(rng)[1])
    de = " ".join(T.foreign(rng, "de")[1])
    lang, score = ident.identify(en)
    assert lang == "en" and score > 0.9
    assert ident.identify(de)[0] == "de"
    assert ident.identify("   ") == ("und", 0.0)


def test_exported_langid_model_answers_as_the_package_does(tmp_path, monkeypatch):
    """The exported arrays (made on first use, then loaded by every worker) give the package's own
    identifier's labels and probabilities."""
    from langid.langid import LanguageIdentifier as PackageIdentifier
    from langid.langid import model

    from documents.language import _langid_identifier

    monkeypatch.setenv("SLUICE_MODEL_CACHE", str(tmp_path))
    exported = _langid_identifier()  # exports
    assert list(tmp_path.glob("langid-*.npz"))
    again = _langid_identifier()  # loads the export
    package = PackageIdentifier.from_modelstring(model, norm_probs=True)
    rng = random.Random(5)
    texts = [" ".join(T.article(rng)[1]), " ".join(T.foreign(rng, "de")[1]), " ".join(T.foreign(rng, "fr")[1])]
    texts += ["Это русский текст о погоде.", "日本語のテキストです。", "The weather is nice today. Das Wetter ist schön.", "x"]
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("SLUICE_MODEL_CACHE", str(tmp_path / "a-file" / "cache"))  # cannot be created
    uncached = _langid_identifier()  # decoded in memory, nothing written
    for text in texts:
        assert exported.classify(text) == again.classify(text) == uncached.classify(text) == package.classify(text), text


def test_language_rule_just_inside_and_outside_min_score():
    mixed = "The weather is nice today. Das Wetter ist heute schön und warm."
    lang, score = LanguageIdentifier(LanguageOptions()).identify(mixed)
    page = f"<html><body><p>{mixed}</p></body></html>".encode()
    row = {
        "doc_id": "d",
        "url": "https://a.example/x",
        "host": "a.example",
        "warc_date": None,
        "warc_record_id": "r",
        "warc_file": "f",
        "warc_offset": 0,
        "charset": "utf-8",
        "html": page,
    }
    only_lang = dict(
        extract={"backend": "resiliparse"},
        gopher_repetition={"enabled": False},
        gopher_quality={"enabled": False},
        c4={"enabled": False},
        fineweb={"enabled": False},
    )
    inside = DocumentFilter(FilterOptions(language={"languages": [lang], "min_score": score - 1e-6}, **only_lang))
    outside = DocumentFilter(FilterOptions(language={"languages": [lang], "min_score": score + 1e-6}, **only_lang))
    assert inside.one(row)[0] is not None
    assert outside.one(row)[1] == ("language.low_score", lang, score)


def test_document_filter_keeps_signals_and_explains_rejections():
    f = DocumentFilter(FilterOptions())
    page, _ = article_page(5)
    rng = random.Random(5)
    title, paras = T.article(rng)
    sents, planted = T.pii_sentences(rng)
    pii_page = _render("www.example.com", title, paras[:2] + [" ".join(sents)] + paras[2:], rng)
    base = {"host": "www.example.com", "warc_date": None, "warc_record_id": "r", "warc_file": "f", "warc_offset": 1, "charset": "utf-8"}
    kept, why = f.one({**base, "doc_id": "a", "url": "https://www.example.com/a", "html": pii_page})
    assert why is None
    assert kept["pii_emails"] == 1 and kept["pii_ips"] == 2 and planted["email"][0] not in kept["text"]
    assert kept["language"] == "en" and kept["word_count"] >= 50 and 0 <= kept["dup_5gram_char_frac"] <= 0.15
    _, why = f.one({**base, "doc_id": "b", "url": "https://x/", "html": b"<html><body><nav>Home</nav></body></html>"})
    assert why[0] == "extract.no_text"
    _, why = f.one({**base, "doc_id": "c", "url": "https://x/", "html": _render("s", "t", ["Kurzer Text."], rng)})
    assert why[0].startswith(("language.", "gopher_quality."))
    spam_title, spam_lines = T.spam(rng)
    _, why = f.one({**base, "doc_id": "d", "url": "https://x/", "html": _render("s", spam_title, spam_lines, rng)})
    assert why is not None


def test_fasttext_model_plugged_in_by_path(tmp_path):
    """A real fastText model file (trained here on a toy corpus) loads by path, as lid.176 would."""
    fasttext = pytest.importorskip("fasttext")
    train = tmp_path / "train.txt"
    with train.open("w") as f:
        for _ in range(200):
            f.write("__label__en the cat sat on the mat and the dog ran with it\n")
            f.write("__label__de der hund lief mit der katze und dem ball im garten\n")
    fasttext.train_supervised(str(train), epoch=5, dim=10, minCount=1, verbose=0).save_model(str(tmp_path / "lid.bin"))
    ident = LanguageIdentifier(LanguageOptions(backend="fasttext", model_path=str(tmp_path / "lid.bin")))
    lang, score = ident.identify("the dog and the cat sat on the mat")
    assert lang == "en" and score > 0.5
    assert ident.identify("der hund und die katze im garten")[0] == "de"
    with pytest.raises(ValueError, match="model_path"):
        LanguageIdentifier(LanguageOptions(backend="fasttext", model_path=None, languages=["xx"]))


def _page_with_link_block(paras: list[str]) -> bytes:
    """An article whose main content holds a block of links: the block classifier drops it, so the
    cascade finds the fast path's output ambiguous (more than 5% of the words dropped)."""
    links = " ".join(f'<a href="/more/{i}">{w} {w} {w}</a>' for i, w in enumerate(paras[0].split()[:12]))
    body = "".join(f"<p>{p}</p>" for p in paras[:2]) + f"<p>{links}</p>" + "".join(f"<p>{p}</p>" for p in paras[2:])
    return f"<html><head><title>t</title></head><body><article>{body}</article></body></html>".encode()


def test_cascade_skips_its_slow_path_on_a_page_the_language_filter_drops(monkeypatch):
    """With the filter keeping English only, a German page the fast path finds ambiguous is not
    re-extracted with Trafilatura (its text would be dropped whatever the path); an English one is,
    and so is the German one when its language is kept or the language filter is off."""
    import documents.extract as X

    calls = []
    real = X._trafilatura
    monkeypatch.setattr(X, "_trafilatura", lambda doc, fast=False: calls.append(doc) or real(doc, fast))
    rng = random.Random(5)
    de, en = _page_with_link_block(T.foreign(rng, "de")[1]), _page_with_link_block(T.article(rng)[1])

    def paths(language: dict | None) -> dict[str, str]:
        o = FilterOptions.model_validate({"extract": {"max_seconds": 0}, "language": language or {"enabled": False}})
        f = DocumentFilter(o)
        ex = next(state for rule, _, state in f.active if rule.key == "extract")
        return {name: ex.extract_with_path(page)[1] for name, page in (("de", de), ("en", en))}

    assert paths(None) == {"de": "cascade:trafilatura", "en": "cascade:trafilatura"}  # both ambiguous
    calls.clear()
    assert paths({"languages": ["en"]}) == {"de": "cascade:resiliparse_blocks", "en": "cascade:trafilatura"}
    assert len(calls) == 1
    assert paths({"languages": ["en", "de"]}) == {"de": "cascade:trafilatura", "en": "cascade:trafilatura"}
    assert paths({"languages": []}) == {"de": "cascade:trafilatura", "en": "cascade:trafilatura"}  # empty keeps all
    # the German page's rejection is the language filter's, as it was with the slow path's text
    row = {"doc_id": "d", "url": "https://x.example/de", "html": de, "charset": "utf-8"}
    f = DocumentFilter(FilterOptions.model_validate({"extract": {"max_seconds": 0}, "url": {"enabled": False}}))
    kept, verdict = f.one(row)
    assert kept is None and verdict[:2] == ("language.not_selected", "de")

"""Remove a removed document's text from every file that is not a table: Dagster's and MLflow's
SQLite databases (event logs with metadata previews, run params), gate reports and Data Docs,
logs, MLflow artifacts, quarantined candidates, GPU job resume chunks, exports — and prove that no
file under a folder still holds it.

What is searched for ("needles"): each removed document's URL, the first 80 characters of its
text as a Dagster preview shows them, and each line and sentence of its text of 24 characters or
more; each in its raw, JSON-escaped and HTML-escaped form, since that is how they sit in event logs
and reports. A shared boilerplate line is redacted wherever it appears in such free text: a report
loses a line, no table loses a row. Parquet files lose exactly the rows of the removed ids. SQLite,
gzip and zstd files are decoded before they are searched, so a compressed copy is found too; a
SQLite database is rewritten with VACUUM so that the old pages are gone from the file.
"""

from __future__ import annotations

import gzip
import html
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage.tables import preview_cell

MIN_LINE = 24
SQLITE_MAGIC = b"SQLite format 3\x00"
TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".html", ".htm", ".log", ".txt", ".yaml", ".yml", ".out", ".err", ".csv", ".tsv", ".xml", ""}


def base_needles(texts: Iterable[str | None], urls: Iterable[str | None]) -> set[str]:
    out: set[str] = set()
    for u in urls:
        if u:
            out.add(u)
    for t in texts:
        if not t:
            continue
        out.add(preview_cell(t))
        out.add(t[:80])
        for line in t.splitlines():
            line = line.strip()
            if len(line) >= MIN_LINE:
                out.add(line)
                out.update(s.strip() for s in line.split(". ") if len(s.strip()) >= MIN_LINE)
    return {n for n in out if len(n) >= 12}


def encoded_forms(needles: Iterable[str]) -> list[str]:
    """Each needle as it may be stored: raw, inside a JSON string (ASCII or not, escaped twice for
    a JSON document held in a JSON string), HTML-escaped; longest first so that replacing one does
    not leave a piece of a longer one behind."""
    forms: set[str] = set()
    for n in needles:
        once = json.dumps(n, ensure_ascii=False)[1:-1]
        forms.update(
            {n, once, json.dumps(n)[1:-1], json.dumps(once, ensure_ascii=False)[1:-1], html.escape(n, quote=False), html.escape(n)}
        )
    return sorted((f for f in forms if f), key=len, reverse=True)


class Matcher:
    """Every needle form in one Aho-Corasick automaton (pyahocorasick): one pass over a file finds
    any of thousands of forms, where testing them one by one cost forms × bytes (80 s for a small
    lakehouse). Bytes are matched as Latin-1 text, which maps each byte to one character."""

    def __init__(self, forms: list[str]) -> None:
        import ahocorasick

        self.forms = forms
        self.automaton = ahocorasick.Automaton()
        for f in forms:
            key = f.encode("utf-8").decode("latin-1")
            self.automaton.add_word(key, key)
        if forms:
            self.automaton.make_automaton()

    def in_bytes(self, data: bytes) -> bool:
        return self.in_text(data.decode("latin-1"))

    def in_text(self, text: str) -> bool:
        """``text`` as Latin-1 of its UTF-8 bytes (see :meth:`in_bytes`), or plain ASCII."""
        if not self.forms:
            return False
        for _ in self.automaton.iter(text):
            return True
        return False

    def in_str(self, value: str) -> bool:
        return self.in_text(value.encode("utf-8", "replace").decode("latin-1"))


@dataclass
class ScrubReport:
    files_scrubbed: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"files_scrubbed": len(self.files_scrubbed), "files_deleted": len(self.files_deleted), "scrubbed": self.files_scrubbed[:200]}


def _replace_all(text: str, forms: list[str], mark: str) -> tuple[str, int]:
    n = 0
    for f in forms:
        if f in text:
            n += text.count(f)
            text = text.replace(f, mark)
    return text, n


def _sqlite_scrub(path: Path, m: Matcher, mark: str, dry: bool) -> int:
    """Replace the needles in every text or blob cell (each cell read once, matched in one pass);
    then VACUUM so that freed pages go too. Returns the cells that held one."""
    hits = 0
    for attempt in range(20):
        try:
            con = sqlite3.connect(str(path), timeout=30)
            break
        except sqlite3.OperationalError:
            time.sleep(0.5 * (attempt + 1))
    else:
        raise RuntimeError(f"cannot open {path}")
    try:
        con.text_factory = lambda b: b.decode("utf-8", "replace")
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table' and name not like 'sqlite_%'")]
        for t in tables:
            for c in [r[1] for r in con.execute(f'pragma table_info("{t}")')]:
                try:
                    cells = con.execute(f'select rowid, CAST("{c}" AS TEXT) from "{t}" where "{c}" is not null').fetchall()
                except sqlite3.OperationalError:  # a table without rowid: not one Dagster or MLflow has
                    continue
                for rowid, value in cells:
                    if value is None or not m.in_str(value):
                        continue
                    hits += 1
                    if not dry:
                        con.execute(f'update "{t}" set "{c}" = ? where rowid = ?', (_replace_all(value, m.forms, mark)[0], rowid))
        if hits and not dry:
            con.commit()
            con.execute("pragma wal_checkpoint(TRUNCATE)")
            con.execute("vacuum")
    finally:
        con.close()
    return hits


def _nested_strings(t: pa.Table) -> Iterable[pa.ChunkedArray]:
    """String columns inside structs (a Delta checkpoint's ``add.stats``), flattened."""
    while any(pa.types.is_struct(c.type) for c in t.columns):
        t = t.flatten()
    for col in t.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
            yield col.cast(pa.string())


ID_NAMES = ("doc_id", "source_doc_id", "related_doc_id", "cluster_id", "dup_cluster_id")


def _parquet_rows_with(t: pa.Table, ids: set[str]) -> pa.Array:
    """A boolean mask of the rows naming a removed id in any id column. Rows are matched by id,
    not by text, so that a shared line never costs another document its row."""
    mask = pa.array([False] * t.num_rows)
    for name in ID_NAMES:
        if name in t.column_names and ids:
            mask = pc.or_(mask, pc.fill_null(pc.is_in(t.column(name).cast(pa.string()), pa.array(sorted(ids))), False))
    return mask


def _parquet_has(path: Path, forms: list[str], ids: set[str]) -> bool:
    """A row of a removed id; or, in a file with no id column (a Delta checkpoint, a report
    table), a needle in any string."""
    t = pq.read_table(path)
    if any(n in t.column_names for n in ID_NAMES):
        return bool(pc.any(_parquet_rows_with(t, ids)).as_py())
    return any(pc.any(pc.fill_null(pc.match_substring(col, f), False)).as_py() for col in _nested_strings(t) for f in forms)


def _decoded(path: Path) -> bytes | None:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            return fh.read()
    if path.suffix == ".zst":
        with pa.input_stream(str(path), compression="zstd") as fh:
            return fh.read()
    return None


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def walk(roots: Iterable[Path], skip: Callable[[Path], bool]) -> Iterable[Path]:
    seen = set()
    for root in roots:
        if not root.exists():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for fn in files:
                p = Path(dirpath) / fn
                rp = p.resolve()
                if rp in seen or p.is_symlink() or skip(p):
                    continue
                seen.add(rp)
                yield p


def scrub(roots: Iterable[Path], needles: set[str], ids: set[str], mark: str, skip: Callable[[Path], bool]) -> ScrubReport:
    """Remove the needles (and Parquet rows of the removed ids) from every file under ``roots``
    that ``skip`` does not exclude (the Delta tables, handled by the takedown itself)."""
    forms = encoded_forms(needles)
    m = Matcher(forms)
    rep = ScrubReport()
    for p in walk(roots, skip):
        if p.name.endswith("-wal") or p.name.endswith("-journal") or p.name.endswith("-shm"):
            continue  # folded into their database by its checkpoint
        if _is_sqlite(p):
            if _sqlite_scrub(p, m, mark, dry=False):
                rep.files_scrubbed.append(str(p))
            continue
        if p.suffix == ".parquet":
            try:
                t = pq.read_table(p)
            except Exception:  # noqa: BLE001 - not a readable Parquet file: searched as bytes below
                t = None
            if t is not None and any(n in t.column_names for n in ID_NAMES):
                mask = _parquet_rows_with(t, ids)
                n = pc.sum(pc.cast(mask, pa.int64())).as_py() or 0
                if n:
                    kept = t.filter(pc.invert(mask))
                    if kept.num_rows:
                        pq.write_table(kept, p, compression="zstd")
                        rep.files_scrubbed.append(str(p))
                    else:
                        p.unlink()
                        rep.files_deleted.append(str(p))
                continue
        data = _decoded(p)
        if data is not None:
            if m.in_bytes(data):
                text, _ = _replace_all(data.decode("utf-8", "replace"), forms, mark)
                if p.suffix == ".gz":
                    with gzip.open(p, "wb") as fh:
                        fh.write(text.encode())
                else:
                    with pa.output_stream(str(p), compression="zstd") as fh:
                        fh.write(text.encode())
                rep.files_scrubbed.append(str(p))
            continue
        raw = p.read_bytes()
        if not m.in_bytes(raw):
            continue
        if p.suffix.lower() in TEXT_SUFFIXES or _utf8(raw):
            text, _ = _replace_all(raw.decode("utf-8", "replace"), forms, mark)
            p.write_text(text, encoding="utf-8")
            rep.files_scrubbed.append(str(p))
        else:  # a binary file holding the text (a cache, a pickle): it goes
            p.unlink()
            rep.files_deleted.append(str(p))
    return rep


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def find(roots: Iterable[Path], needles: set[str], ids: set[str], skip: Callable[[Path], bool] = lambda p: False) -> list[str]:
    """Files under ``roots`` that still hold a needle or a row of a removed id (decoded)."""
    forms = encoded_forms(needles)
    m = Matcher(forms)
    found = []
    for p in walk(roots, skip):
        if _is_sqlite(p):  # its cells, and its bytes (a freed page may still hold old text)
            if _sqlite_scrub(p, m, "", dry=True) or m.in_bytes(p.read_bytes()):
                found.append(str(p))
            continue
        if p.suffix == ".parquet":
            try:
                if _parquet_has(p, forms, ids):
                    found.append(str(p))
                continue
            except Exception:  # noqa: BLE001 - searched as bytes below
                pass
        data = _decoded(p) if p.suffix in (".gz", ".zst") else None
        if m.in_bytes(data if data is not None else p.read_bytes()):
            found.append(str(p))
    return found

"""Language identification with an offline model.

* ``langid`` (default): langid.py's model ships inside its PyPI package; probabilities normalised,
  about 2 ms for a 7 kB page.
* ``lingua``: the Lingua detector (Rust), low-accuracy mode.
* ``fasttext``: any fastText language-ID model file by path (lid.176.bin, GlotLID), for the
  FineWeb setup; needs the ``fasttext`` package.

Only the first ``max_chars`` characters are looked at: enough for a stable answer, and the cost of
every backend grows with the text.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class LanguageOptions(BaseModel):
    enabled: bool = True
    backend: Literal["langid", "lingua", "fasttext"] = "langid"
    model_path: str | None = None  # fastText model file
    languages: list[str] = Field(default_factory=lambda: ["en"])  # ISO 639-1; empty keeps all
    min_score: float = 0.65
    max_chars: int = 3000


class LanguageIdentifier:
    def __init__(self, o: LanguageOptions) -> None:
        self.o = o
        self._predict = _backend(o.backend, o.model_path)

    def identify(self, text: str) -> tuple[str, float]:
        snippet = " ".join(text[: self.o.max_chars].split())
        if not snippet:
            return "und", 0.0
        return self._predict(snippet)


@lru_cache(maxsize=4)
def _backend(name: str, model_path: str | None):
    if name == "langid":
        ident = _langid_identifier()

        def predict(text: str) -> tuple[str, float]:
            lang, p = ident.classify(text)
            return lang, float(p)

        return predict
    if name == "lingua":
        from lingua import LanguageDetectorBuilder

        det = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()

        def predict(text: str) -> tuple[str, float]:
            values = det.compute_language_confidence_values(text)
            if not values:
                return "und", 0.0
            top = values[0]
            return top.language.iso_code_639_1.name.lower(), float(top.value)

        return predict
    if name == "fasttext":
        if not model_path:
            raise ValueError("language.backend=fasttext needs language.model_path (e.g. lid.176.bin)")
        try:
            import fasttext
        except ImportError as e:  # pragma: no cover - depends on the optional package
            raise ImportError("language.backend=fasttext needs the fasttext package (pip install 'sluice[fasttext]')") from e
        model = fasttext.load_model(model_path)

        def predict(text: str) -> tuple[str, float]:
            # The low-level call: fasttext-wheel 0.9.2's predict() breaks on NumPy 2 (copy=False).
            top = model.f.predict(text.replace("\n", " "), 1, 0.0, "strict")
            if not top:
                return "und", 0.0
            prob, label = top[0]
            # GlotLID labels look like eng_Latn; lid.176 like en.
            return label.replace("__label__", "").split("_")[0], float(min(1.0, prob))

        return predict
    raise ValueError(f"unknown language backend {name!r}")


def _langid_identifier():
    """langid.py's identifier from its model's arrays, exported once per machine.

    The package ships the model as a bz2-compressed, base64-encoded pickle, and ``from_modelstring``
    took about 4.5 s per process on 2 cores (decompression, unpickling, then a copy of each array
    element by element). Every Spark Python worker of the filter stage paid it at start. The
    exported ``.npz`` loads in a few milliseconds, and the identifier is built from the same arrays.
    """
    import array

    import numpy as np
    from langid import langid

    from documents.model_cache import exported_arrays

    try:
        with np.load(exported_arrays("langid", [Path(langid.__file__)], _langid_arrays), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except OSError:  # a cache that cannot be written (e.g. an executor's read-only home): decoded here
        arrays = _langid_arrays()
    ptc = arrays["ptc"]
    nextmove = array.array("H", arrays["nextmove"].tobytes())  # indexed per character: the package's own type
    ends = np.cumsum(arrays["output_lengths"]).tolist()
    values = arrays["output_values"].tolist()
    keys, lengths = arrays["output_keys"].tolist(), arrays["output_lengths"].tolist()
    output = {k: tuple(values[e - n : e]) for k, n, e in zip(keys, lengths, ends)}
    return langid.LanguageIdentifier(ptc, arrays["pc"], ptc.shape[0], arrays["classes"].tolist(), nextmove, output, norm_probs=True)


def _langid_arrays() -> dict:
    """The arrays of the model langid.py ships (its ``model`` string decoded)."""
    import base64
    import bz2
    import pickle

    import numpy as np
    from langid import langid

    ptc, pc, classes, nextmove, output = pickle.loads(bz2.decompress(base64.b64decode(langid.model)))
    keys = sorted(output)
    return {
        "ptc": np.frombuffer(ptc, dtype=np.float32).reshape(len(ptc) // len(pc), len(pc)),
        "pc": np.frombuffer(pc, dtype=np.float32),
        "classes": np.array(classes),
        "nextmove": np.frombuffer(nextmove, dtype=np.uint16),
        "output_keys": np.array(keys, dtype=np.int64),
        "output_lengths": np.array([len(output[k]) for k in keys], dtype=np.int64),
        "output_values": np.array([v for k in keys for v in output[k]], dtype=np.int64),
    }

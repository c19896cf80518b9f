"""Architectures as pure data: the shared representation, converters, published cells and loading."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import GenotypeError
from .._io import atomic_write_text
from .core import CELL_SHARING, KNOWN_OPS, CellArch, Edge, Genotype, register_op_name, register_text_format
from .darts_text import (from_darts_mapping, from_darts_pairs, from_darts_text, looks_like_darts_mapping,
                         looks_like_darts_text, to_darts_text)
from .nao_seq import (NAO_SMALL_OPS, format_nao_seq, from_nao_seq, from_nao_text, looks_like_nao_text, parse_nao_seq,
                      to_nao_seq)
from .nb201_text import from_nb201_text, looks_like_nb201_text, to_nb201_text
from .published import PUBLISHED, published, published_names

__all__ = ["Edge", "CellArch", "Genotype", "KNOWN_OPS", "CELL_SHARING", "register_op_name", "from_darts_text",
           "to_darts_text", "from_darts_pairs", "from_darts_mapping", "from_nb201_text", "to_nb201_text", "PUBLISHED", "published",
           "published_names", "load_genotype", "save_genotype", "register_text_format", "from_nao_seq", "to_nao_seq",
           "parse_nao_seq", "format_nao_seq", "NAO_SMALL_OPS"]


def load_genotype(spec: "str | Path | Genotype") -> Genotype:
    """Accepts a genotype, a file (JSON, classic text, an NB201 string or NAO text), a published name, classic text, an
    NB201 string ``|op~0|+|...|``, NAO text ``NAO(normal="...", reduce="...")`` or JSON text."""
    if isinstance(spec, Genotype):
        return spec
    text = str(spec).strip()
    if looks_like_darts_text(text):
        return from_darts_text(text)
    if looks_like_nb201_text(text):
        return from_nb201_text(text)
    if looks_like_nao_text(text):
        return from_nao_text(text)
    if text.startswith("{"):
        return _from_json(text)
    try:
        path = Path(text).expanduser()
    except (RuntimeError, ValueError):  # "~someone" with no such user, "~\x00": not a path then
        path = Path(text)
    try:
        if path.is_dir() and (path / "genotype.json").is_file():
            path = path / "genotype.json"
        is_file = path.is_file()
    except OSError:  # e.g. a long text that is not a path: "File name too long"
        is_file = False
    if is_file:
        try:
            content = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise GenotypeError(f"cannot read genotype file {path}: {exc}") from None
        if not content:
            raise GenotypeError(f"{path}: the file is empty; write a genotype as JSON or Genotype(...) text")
        if not (content.startswith("{") or looks_like_darts_text(content) or looks_like_nb201_text(content)
                or looks_like_nao_text(content)):
            raise GenotypeError(f"{path}: not a genotype file (expected JSON or Genotype(...) text, found "
                                f"{content[:40]!r}{'...' if len(content) > 40 else ''})")
        try:
            return load_genotype(content)
        except GenotypeError as exc:
            raise GenotypeError(f"{path}: {exc}") from None
    if text in PUBLISHED or text.lower() in {k.lower() for k in PUBLISHED}:
        return published(text)
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise GenotypeError(f"{shown!r} is not a genotype file, a published name ({', '.join(published_names())}), "
                        f"a Genotype(...) text, an NB201 string |op~0|+|...| or JSON")


def _from_json(text: str) -> Genotype:
    """nasforge's JSON (``cells``), or the classic DARTS fields as JSON (``normal``, ``reduce``, ...)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return Genotype.from_json(text)  # the same one-line message for invalid JSON
    if looks_like_darts_mapping(data):
        return from_darts_mapping(data)
    return Genotype.from_dict(data)


def save_genotype(genotype: Genotype, path: "str | Path") -> None:
    """Write JSON atomically (temporary file, then rename) with the canonical hash alongside."""
    data = genotype.to_dict()
    data["hash"] = genotype.hash()
    atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")

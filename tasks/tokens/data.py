"""Your own token data on disk: read, checked with errors that name the row and column, written back.

Formats, by the path: `.npy` (a 2-D integer array, ids only), `.parquet`, `.arrow` /
`.feather` (Arrow IPC file or stream), or a folder written by `datasets`' `save_to_disk`.
Table formats hold one row per sequence: the ids as a list column, and optionally a class
label (int), a condition prefix (a list of ids) and a vector per token (a list, as long as the
row's ids, of lists of `model.continuous_dim` finite numbers: the joint model's continuous
half). Rows shorter than the model's length need a pad id: the rows are padded with it at the
end, and it may not appear inside a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddm.config import ConfigError
from ddm.io import atomic_directory, atomic_file

TABLE_SUFFIXES = (".parquet", ".arrow", ".feather")


class TokenDataError(ValueError):
    """The token data does not fit the model or its declared layout."""


@dataclass
class TokenTable:
    ids: np.ndarray  # [N, L] int64, padded with pad_id
    lengths: np.ndarray  # [N] real tokens per row
    classes: np.ndarray | None = None  # [N]
    prefix: np.ndarray | None = None  # [N, P] int64, 0 past a row's prefix
    prefix_mask: np.ndarray | None = None  # [N, P] bool
    values: np.ndarray | None = None  # [N, L, C] float32, 0 at pads

    def rows(self, index: np.ndarray) -> "TokenTable":
        pick = (lambda a: None if a is None else a[index])
        return TokenTable(self.ids[index], self.lengths[index], pick(self.classes), pick(self.prefix),
                          pick(self.prefix_mask), pick(self.values))


def data_format(path: str | Path) -> str:
    """npy, parquet, arrow or datasets (a folder); anything else is an error naming the path."""
    path = Path(path)
    if path.suffix == ".npy":
        return "npy"
    if path.suffix == ".parquet":
        return "parquet"
    if path.suffix in (".arrow", ".feather"):
        return "arrow"
    if path.is_dir() or not path.suffix:
        return "datasets"
    raise ConfigError(f"task.path: {path} is not a token file this task reads: .npy, .parquet, .arrow / .feather, "
                      "or a datasets folder (save_to_disk)")


def _read_table(path: Path, fmt: str):
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if fmt == "arrow":
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_file(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_stream(source).read_all()
    from datasets import Dataset, load_from_disk

    data = load_from_disk(str(path))
    if not isinstance(data, Dataset):
        raise TokenDataError(f"{path}: a datasets folder of several splits ({', '.join(data)}); point task.path "
                             "at one split's folder")
    return data.with_format("arrow")[:]


def read_columns(path: str | Path, column: str, extra: list[str]) -> dict[str, list]:
    """{"ids": rows of ids, <extra column>: values} as Python lists."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"task.path: {path}: no such file or folder")
    fmt = data_format(path)
    if fmt == "npy":
        if extra:
            raise ConfigError(f"task: a .npy file holds ids only, so {', '.join(extra)} cannot be read from "
                              f"{path}; use Parquet, Arrow or a datasets folder for extra columns")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as e:
            raise TokenDataError(f"{path}: not an integer array saved by numpy ({e})") from None
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
            raise TokenDataError(f"{path}: expected a 2-D integer array [sequences, tokens], got "
                                 f"{array.dtype} of shape {array.shape}")
        return {"ids": array}
    table = _read_table(path, fmt)
    missing = [c for c in [column, *extra] if c not in table.column_names]
    if missing:
        raise TokenDataError(f"{path}: no column(s) {missing}; it has {table.column_names}")
    return {"ids": table.column(column).to_pylist(), **{c: table.column(c).to_pylist() for c in extra}}


def _check_row(values, r: int, where: str, vocab: int, vocab_name: str) -> np.ndarray:
    if not isinstance(values, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                                    for v in values):
        raise TokenDataError(f"{where}, row {r}: expected a list of integer ids, got {values!r:.80}")
    row = np.asarray(values, dtype=np.int64)
    bad = np.flatnonzero((row < 0) | (row >= vocab))
    if bad.size:
        c = int(bad[0])
        raise TokenDataError(f"{where}, row {r}, column {c}: id {int(row[c])} is outside the vocabulary "
                             f"[0, {vocab}) ({vocab_name})")
    return row


def build_table(columns: dict[str, list], where: str, length: int, vocab: int, pad_id: int | None,
                label: str = "", num_classes: int = 0, prefix: str = "", cond_vocab: int = 0,
                cond_len: int = 0, values: str = "", continuous_dim: int = 0) -> TokenTable:
    """Check every row against the model and pad it: see the module docstring for the rules."""
    rows = columns["ids"]
    if not len(rows):
        raise TokenDataError(f"{where}: holds no sequences")
    if pad_id is not None and not 0 <= pad_id < vocab:
        raise ConfigError(f"task.pad_id: {pad_id} is outside the vocabulary [0, {vocab}) (model.vocab_size)")
    table = _array_table(rows, where, length, vocab, pad_id) if isinstance(rows, np.ndarray) else \
        _rows_table(rows, where, length, vocab, pad_id)
    if label:
        where_label = f"{where}, column {label!r}"
        table.classes = np.asarray([_check_row([v], r, where_label, num_classes, "model.num_classes")[0]
                                    for r, v in enumerate(columns[label])], dtype=np.int64)
    if prefix:
        table.prefix, table.prefix_mask = _prefixes(columns[prefix], f"{where}, column {prefix!r}", cond_vocab,
                                                    cond_len)
    if values:
        table.values = _vectors(columns[values], f"{where}, column {values!r}", table.lengths, length, continuous_dim)
    return table


def _array_table(array: np.ndarray, where: str, length: int, vocab: int, pad_id: int | None) -> TokenTable:
    """A 2-D integer array (.npy), checked without a loop over rows."""
    bad = np.argwhere((array < 0) | (array >= vocab))
    if len(bad):
        r, c = (int(i) for i in bad[0])
        raise TokenDataError(f"{where}, row {r}, column {c}: id {int(array[r, c])} is outside the vocabulary "
                             f"[0, {vocab}) (model.vocab_size)")
    if array.shape[1] > length or (pad_id is None and array.shape[1] != length):
        raise TokenDataError(f"{where}: rows of {array.shape[1]} tokens, the model holds {length} (model.shape)"
                             + ("" if pad_id is not None else "; shorter rows need a pad id (task.pad_id)"))
    ids = np.full((len(array), length), -1 if pad_id is None else pad_id, dtype=np.int64)
    ids[:, :array.shape[1]] = array
    if pad_id is None:
        return TokenTable(ids, np.full(len(ids), length, dtype=np.int64))
    real = np.where((ids != pad_id).any(1), length - np.argmax((ids != pad_id)[:, ::-1], axis=1), 0)
    if (real == 0).any():
        raise TokenDataError(f"{where}, row {int(np.flatnonzero(real == 0)[0])}: nothing but padding")
    inside = np.argwhere((ids == pad_id) & (np.arange(length) < real[:, None]))
    if len(inside):
        r, c = (int(i) for i in inside[0])
        raise TokenDataError(f"{where}, row {r}, column {c}: the pad id {pad_id} inside the row; it may only fill "
                             "the end (it is never a target)")
    return TokenTable(ids, real.astype(np.int64))


def _rows_table(rows: list, where: str, length: int, vocab: int, pad_id: int | None) -> TokenTable:
    ids = np.full((len(rows), length), -1 if pad_id is None else pad_id, dtype=np.int64)
    lengths = np.zeros(len(rows), dtype=np.int64)
    first = None
    for r, values in enumerate(rows):
        row = _check_row(values, r, where, vocab, "model.vocab_size")
        if len(row) > length:
            raise TokenDataError(f"{where}, row {r}: {len(row)} tokens, the model holds {length} (model.shape)")
        first = len(row) if first is None else first
        if pad_id is None and (len(row) != first or len(row) != length):
            raise TokenDataError(f"{where}, row {r}: {len(row)} tokens where row 0 has {first} and the model "
                                 f"holds {length}: rows of other lengths need a pad id (task.pad_id)")
        real = len(row)
        if pad_id is not None:
            while real and row[real - 1] == pad_id:
                real -= 1
            inside = np.flatnonzero(row[:real] == pad_id)
            if inside.size:
                raise TokenDataError(f"{where}, row {r}, column {int(inside[0])}: the pad id {pad_id} inside the "
                                     "row; it may only fill the end (it is never a target)")
            if real == 0:
                raise TokenDataError(f"{where}, row {r}: nothing but padding")
        ids[r, :len(row)] = row
        lengths[r] = real
    return TokenTable(ids, lengths)


def _prefixes(values: list, where: str, cond_vocab: int, cond_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Condition prefixes of any length up to cond_len -> (ids [N, P], mask [N, P])."""
    prefixes = [_check_row(v, r, where, cond_vocab, "model.cond_vocab_size") for r, v in enumerate(values)]
    ids = np.zeros((len(prefixes), cond_len), dtype=np.int64)
    mask = np.zeros((len(prefixes), cond_len), dtype=bool)
    for r, p in enumerate(prefixes):
        if not 1 <= len(p) <= cond_len:
            raise TokenDataError(f"{where}, row {r}: a prefix of {len(p)} ids; the model takes 1 to {cond_len} "
                                 "(model.cond_len)")
        ids[r, :len(p)] = p
        mask[r, :len(p)] = True
    return ids, mask


def _vectors(rows: list, where: str, lengths: np.ndarray, length: int, dim: int) -> np.ndarray:
    """One vector of `dim` finite numbers per real token of each row -> [N, L, dim] float32 (0 at pads)."""
    out = np.zeros((len(rows), length, dim), dtype=np.float32)
    for r, row in enumerate(rows):
        try:
            array = np.asarray(row, dtype=np.float64)
        except (TypeError, ValueError):
            raise TokenDataError(f"{where}, row {r}: expected a list of vectors of {dim} numbers") from None
        if array.ndim != 2 or array.shape != (lengths[r], dim):
            raise TokenDataError(f"{where}, row {r}: vectors of shape {array.shape}, expected ({lengths[r]}, {dim}): "
                                 f"one per token of the row ({lengths[r]}), model.continuous_dim={dim} each")
        bad = np.argwhere(~np.isfinite(array))
        if len(bad):
            raise TokenDataError(f"{where}, row {r}, token {int(bad[0][0])}: {array[tuple(bad[0])]} is not a finite "
                                 "number")
        out[r, :lengths[r]] = array
    return out


def write_tokens(path: Path, fmt: str, table: TokenTable, column: str, label: str = "", prefix: str = "",
                 values: str = "") -> Path:
    """Write sampled rows in the format they were read in (written whole, then renamed into place).
    npy keeps the padded array; table formats hold each row's real tokens only."""
    if fmt == "npy":
        with atomic_file(path) as tmp:
            np.save(tmp, table.ids)
        return path
    from datasets import Dataset

    data = {column: [row[:n].tolist() for row, n in zip(table.ids, table.lengths)]}
    if label and table.classes is not None:
        data[label] = table.classes.tolist()
    if prefix and table.prefix is not None:
        data[prefix] = [p[m].tolist() for p, m in zip(table.prefix, table.prefix_mask)]
    if values and table.values is not None:
        data[values] = [v[:n].tolist() for v, n in zip(table.values, table.lengths)]
    dataset = Dataset.from_dict(data)
    if fmt == "datasets":
        with atomic_directory(path) as tmp:
            dataset.save_to_disk(str(tmp))
    elif fmt == "parquet":
        with atomic_file(path) as tmp:
            dataset.to_parquet(str(tmp))
    else:
        import pyarrow as pa

        arrow = dataset.with_format("arrow")[:]
        with atomic_file(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, arrow.schema) as w:
            w.write_table(arrow)
    return path

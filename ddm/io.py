"""Atomic file-system writes: a reader never sees a half-written file or folder.

Every checkpoint, pretrained folder and results file in the project goes through
these helpers: the content is written under a temporary name in the same folder,
flushed to disk, and renamed into place (a rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _chmod_default(path: Path, mode: int) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _fsync_tree(path: Path) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `final` in one rename.

    On an exception (or a kill) the temporary folder is removed (or left with a
    `.tmp-` name that readers ignore) and `final` keeps its previous content.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    _chmod_default(tmp, 0o777)  # mkdtemp makes 0700 folders; published folders get the usual mode
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            # Two renames: the old folder is moved aside first, so `final` is
            # always either the old or the new complete folder.
            old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=final.parent))
            os.rmdir(old)
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write a file to; on success it is flushed and
    renamed to `path` in one step, on an exception removed (`path` keeps its old content)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        _chmod_default(Path(tmp), 0o666)
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def read_tensors(path: str | os.PathLike, device: str = "cpu", what: str = "safetensors file") -> dict:
    """The tensors of a safetensors file; a missing, truncated or foreign file is a ValueError
    naming it (safetensors raises its own error types)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        return load_file(str(path), device=device)
    except Exception as e:  # noqa: BLE001  SafetensorError, or an OSError of a damaged file
        raise ValueError(f"{path}: a corrupt or truncated {what} ({e})") from None


def tensor_entry(tensors: dict, key: str, path: str | os.PathLike):
    """tensors[key], or a KeyError naming the file and what it holds."""
    if key not in tensors:
        raise KeyError(f"{path}: no tensor {key!r}; it holds {sorted(tensors)}")
    return tensors[key]

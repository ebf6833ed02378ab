"""The IDX data sets (MNIST, Fashion-MNIST, KMNIST) as data sources: 60,000 + 10,000 28×28 images.

Where their files come from and how they are verified is :mod:`aelab.data.sources`; this file
makes each one a :class:`~aelab.data.source.Source` with what its samples are called. They take
no options: their splits are as published.
"""

from __future__ import annotations

from typing import Literal

from .dataset import IMAGES, Dataset, Nouns
from .source import DataOptions, Source, SourceOptions
from .sources import IDX_SETS, load_idx_set


class IdxOptions(SourceOptions):
    """No options: the images and splits are as published."""

    kind: Literal["idx"] = "idx"


#: what one sample of each set is called
NOUNS = {"mnist": Nouns("digit", "digits"), "fashion-mnist": IMAGES, "kmnist": Nouns("character", "characters")}


def _source(name: str) -> Source:
    s = IDX_SETS[name]

    def read(cfg, opts: IdxOptions, data_opts: DataOptions) -> Dataset:
        mn = load_idx_set(s, data_dir=data_opts.data_dir, files=data_opts.files, offline=data_opts.offline,
                          progress=data_opts.progress)
        prov = {"dataset": name, "kind": "idx", "source": mn.source, "cache_dir": str(mn.cache_dir),
                "files": dict(mn.origins)}
        if name != "mnist":  # MNIST's run.json keeps the fields it always had
            prov["sha256"] = dict(mn.sha256)
        # (N, 28, 28) → (N, 1, 28, 28): a view, the samples' shape says "one channel"
        return Dataset(name, "idx", mn.x_train[:, None], mn.y_train, mn.x_test[:, None], mn.y_test, (0, 255),
                       s.classes, prov, NOUNS[name])

    return Source(name, read, IdxOptions, f"{s.title}: 60,000 + 10,000 28×28 grayscale images, 10 classes "
                                          f"({s.homepage})", NOUNS[name], s.classes, (1, 28, 28), (0, 255),
                  what=f"{s.title}, whose images are as published", uses_files=True)


SOURCES = tuple(_source(name) for name in IDX_SETS)

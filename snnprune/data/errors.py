"""The one exception a loader raises when its data is not on disk."""

from __future__ import annotations

import os

README = "data/README.md"


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not where the loader looks for them.

    The message is one line that names the expected folder layout and where the data comes from,
    so a command-line tool can print it as it is and exit with status 2.

    Args:
        dataset: the data set's name.
        path: where the loader looked.
        layout: the expected files, relative to the root.
        source: where the data can be obtained.

    Example:
        >>> err = DatasetNotFoundError("cifar10", "/data/cifar-10-batches-py",
        ...                            "<root>/cifar-10-batches-py/data_batch_1..5",
        ...                            "https://www.cs.toronto.edu/~kriz/cifar.html")
        >>> isinstance(err, FileNotFoundError), "\\n" in str(err)
        (True, False)
    """

    def __init__(self, dataset: str, path: str | os.PathLike, layout: str, source: str):
        self.dataset, self.path, self.layout, self.source = dataset, os.fspath(path), layout, source
        super().__init__(
            f"{dataset}: no data at {self.path}; expected {layout}; get it from {source} "
            f"(see {README})"
        )

    def __str__(self) -> str:  # FileNotFoundError would prefix an errno otherwise
        return self.args[0]

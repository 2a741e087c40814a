"""Arrow columns as numpy arrays without pandas (private helper of the CSV readers).

pyarrow's ``Array.to_numpy`` and ``ChunkedArray.to_numpy`` go through its pandas
conversion layer and import pandas on first use (~0.2 s, pyarrow 26), as does building an
array or scalar from Python objects; the readers of a ``simulate`` run need none of pandas,
so they take fixed-width columns straight from the Arrow buffers (layout: Arrow columnar
format, "Fixed-size primitive layout": validity bitmap, LSB first, then the values).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa


def column_values(chunks: Iterable[pa.Array], dtype: type) -> np.ndarray:
    """The values of fixed-width Arrow arrays (the chunks of one column) as one numpy array.

    Parameters
    ----------
    chunks:
        Arrays of a fixed-width type whose numpy equivalent is ``dtype`` (float64 for
        ``pa.float64()``, int32 for ``pa.int32()`` dictionary indices, ...).
    dtype:
        The numpy dtype of the values.

    Returns
    -------
    numpy.ndarray
        A new writable array of the concatenated values; null slots are NaN (a float
        ``dtype``) or undefined (an integer one: check ``null_count`` first).
    """
    width = np.dtype(dtype).itemsize
    parts = []
    for c in chunks:
        validity, data = c.buffers()[:2]
        values = np.frombuffer(data, dtype, len(c), c.offset * width)
        if c.null_count and validity is not None:
            bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
            values = np.where(bits[c.offset:c.offset + len(c)].astype(bool), values, np.nan)
        parts.append(values)
    return np.concatenate(parts) if parts else np.empty(0, dtype)

"""The IDX format MNIST and Fashion-MNIST ship in: 2 zero bytes, a type byte, a rank byte,
big-endian uint32 dimensions, then the big-endian data (optionally gzipped)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from tailorkit.errors import TailorError

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """The array an IDX file holds, gzipped or not; a one-line error naming a bad file."""
    path = Path(path)
    if not path.is_file():
        raise TailorError(f"IDX file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise TailorError(f"{path}: corrupt gzip data ({err})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_TYPES:
        raise TailorError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    rank = data[3]
    header = 4 + 4 * rank
    if len(data) < header:
        raise TailorError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise TailorError(f"{path}: IDX header says {shape} ({expected} bytes of data) but the file "
                          f"has {len(data) - header}; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header).reshape(shape)

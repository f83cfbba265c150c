"""An open index's columns as the lookups read them: each checked against its CRC-32 when first
read, read as Python ints one at a time where a binary search visits a few of them.

``IndexColumns`` is the part of ``engine.index.opening.FlowIndex`` the lookups (``engine.index.lookup``)
and the offset decoding (``engine.index.offsets``) share.
"""

from __future__ import annotations

import sys
import zlib
from typing import NoReturn, Protocol

import numpy as np

from .format import IndexHeader, IndexUnusable


class IntColumn(Protocol):
    """A column read as Python ints, one at a time (``FlowIndex._view``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, at: int, /) -> int: ...


# Up to this many flow rows are read one value at a time (``FlowIndex.rows``).
FEW_ROWS = 16
# memoryview formats of the unsigned column types, on a little-endian machine (the index's order).
_VIEW_CODES = {"<u2": "H", "<u4": "I", "<u8": "Q", "|u1": "B"}


class _CheckedColumns:
    """An index's columns by name, each checked against its CRC-32 the first time it is read."""

    def __init__(self, owner: IndexColumns, columns: dict[str, np.ndarray], crcs: dict[str, int]):
        self._owner, self._columns, self._crcs = owner, columns, crcs
        self._checked: set[str] = set()

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __getitem__(self, name: str) -> np.ndarray:
        column = self._columns[name]
        if name not in self._checked:
            if zlib.crc32(column.data) != self._crcs[name]:
                self._owner.damaged(f"column {name} does not match its checksum")
            self._checked.add(name)
        return column

    def check_all(self) -> None:
        for name in self._columns:
            self[name]


class IndexColumns:
    """What the lookups and the offset decoding read of an open index (set by ``FlowIndex``)."""

    path: str
    header: IndexHeader
    n_flows: int
    n_v4: int
    records: int
    first_ns: int
    last_ns: int
    capture_size: int
    columns: _CheckedColumns
    _views: dict[str, IntColumn]

    def damaged(self, problem: str) -> NoReturn:
        raise NotImplementedError

    def _checked(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) <= FEW_ROWS:  # numpy's max and min cost more than a few ints in Python
            few = ids.tolist()
            if few and (max(few) >= self.n_flows or min(few) < 0):
                raise IndexUnusable(f"{self.path}: a lookup names flow {max(few)} of {self.n_flows}")
        elif ids.max() >= self.n_flows or ids.min() < 0:
            raise IndexUnusable(f"{self.path}: a lookup names flow {ids.max()} of {self.n_flows}")
        return ids

    def _view(self, name: str) -> IntColumn:
        """Column ``name`` as a sequence of Python ints (a memoryview: a binary search reads it cheaply)."""
        view = self._views.get(name)
        if view is None:
            column = self.columns[name]
            code = _VIEW_CODES.get(column.dtype.str) if sys.byteorder == "little" else None
            as_bytes = memoryview(column.data).cast("B")
            view = _IntColumn(column) if code is None else as_bytes.cast(code)  # type: ignore[call-overload]
            self._views[name] = view
        return view


class _IntColumn:
    """A column read as Python ints one at a time, where a memoryview cannot show it."""

    def __init__(self, column: np.ndarray) -> None:
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, at: int) -> int:
        return int(self.column[at])

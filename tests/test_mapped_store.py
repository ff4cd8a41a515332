"""The thread backend's store (``backends/mapped_store.py``): what each buffer becomes."""

from __future__ import annotations

import numpy as np
import pytest

from actorlib.backends.mapped_store import MAPPED_FROM, MappedHeapStore
from actorlib.core.serialization import Serialized


def _sealed(*buffers: object) -> list[object]:
    return MappedHeapStore().seal(Serialized(b"", list(buffers))).buffers


def test_a_large_buffer_is_copied_into_a_read_only_mapping() -> None:
    arr = np.arange(MAPPED_FROM // 8, dtype=np.float64)
    (copy,) = _sealed(memoryview(arr))
    assert isinstance(copy, memoryview) and copy.readonly and copy.nbytes == arr.nbytes
    arr[:] = -1.0  # the original changes later: the copy does not
    assert np.array_equal(np.frombuffer(copy, dtype=np.float64),
                          np.arange(MAPPED_FROM // 8, dtype=np.float64))
    with pytest.raises(TypeError):
        copy[0] = 1


def test_small_and_strided_buffers_stay_bytes() -> None:
    small = np.ones(16)
    strided = np.ones(MAPPED_FROM // 4)[::2]  # large, but not contiguous
    copies = _sealed(memoryview(small), memoryview(strided))
    assert [type(c) for c in copies] == [bytes, bytes]
    assert copies[0] == small.tobytes() and copies[1] == strided.tobytes()

"""Count the operations that make the host wait for an accelerator.

On a GPU the host queues kernels and runs ahead; reading a value back stops it until
every queued kernel has run: ``.item()`` or a Python ``if`` on a tensor, boolean-mask
indexing, ``torch.unique``, ``bincount``, ``torch.equal``, and the error checks of
``torch.linalg.solve``/``inv``. In a step of many tiny kernels each such wait costs
about as much as the kernels before it, so a loop step should have none.

The census watches the ATen operations that imply such a read (a ``TorchDispatchMode``),
so it runs on any device, the CPU included: a CPU test can hold a GPU code path to "no
waits". Copies between host and device are not counted (on the CPU they are no
operation at all).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

WAITING_OPERATIONS = frozenset(
    {
        "_local_scalar_dense",  # .item(), bool(), int(), float() of a tensor
        "nonzero",
        "masked_select",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "bincount",
        "equal",
        "_linalg_check_errors",  # linalg.solve / inv / cholesky without the _ex suffix
    }
)
"""ATen operations (overload names stripped) that read device values on the host."""

_INDEXING = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})


def _is_boolean_index(name: str, args: tuple[Any, ...]) -> bool:
    """Indexing with a boolean mask: its output size needs the mask's count."""
    import torch

    if name not in _INDEXING or len(args) < 2:
        return False
    return any(
        isinstance(index, torch.Tensor) and index.dtype in (torch.bool, torch.uint8)
        for index in args[1]
        if index is not None
    )


@contextmanager
def count_device_waits() -> Iterator[Counter[str]]:
    """Count, by operation name, what the code in the block does that waits for the
    device (``"boolean index"`` for mask indexing). The counter fills as the block runs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: Counter[str] = Counter()

    class Census(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            name = func.__name__.split(".")[0]
            if name in WAITING_OPERATIONS:
                counts[name] += 1
            elif _is_boolean_index(name, args):
                counts["boolean index"] += 1
            return func(*args, **(kwargs or {}))

    with Census():
        yield counts

"""Count the operations that make the host wait for an accelerator.

On a GPU the host queues kernels and runs ahead; reading a value back stops it until
every queued kernel has run: ``.item()`` or a Python ``if`` on a tensor, boolean-mask
indexing, ``torch.unique``, ``bincount``, ``torch.equal``, the error checks of
``torch.linalg.solve``/``inv``, and ``torch.matrix_exp``, whose CUDA kernel reads the
matrices' norms on the host to choose its degree and number of squarings
(``aten/src/ATen/native/LinearAlgebra.cpp``). A wait costs little once per step; a wait
per structure makes the step grow with the batch.

The census watches the ATen operations that imply such a read (a ``TorchDispatchMode``),
so it runs on any device, the CPU included: a CPU test can hold a GPU code path to a
number of waits. What it cannot see: copies to the host (``.cpu()``, ``.numpy()``,
``.tolist()`` are no operation at all on the CPU) and reads inside other kernels than
``matrix_exp``. Some CPU kernels check values on the host where their CUDA versions do
not (``one_hot`` with a class count); those are not listed.
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
        "linalg_matrix_exp",  # reads norms on the host (CUDA kernel)
    }
)
"""ATen operations (overload names stripped) that read device values on the host."""

_INDEXING = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})


def _reads_sizes(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The name to count for operations whose output size needs a device value:
    indexing with a boolean mask, ``repeat_interleave`` without ``output_size``."""
    import torch

    if name in _INDEXING and len(args) >= 2:
        masks = [
            index
            for index in args[1]
            if isinstance(index, torch.Tensor) and index.dtype in (torch.bool, torch.uint8)
        ]
        return "boolean index" if masks else None
    if name == "repeat_interleave" and kwargs.get("output_size") is None:
        # The repeats-only overload is what every tensor-repeats call comes down to.
        return "repeat_interleave" if len(args) == 1 else None
    return None


@contextmanager
def count_device_waits() -> Iterator[Counter[str]]:
    """Count, by operation name, what the code in the block does that waits for the
    device. The counter fills as the block runs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: Counter[str] = Counter()

    class Census(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            name = func.__name__.split(".")[0]
            counted = name if name in WAITING_OPERATIONS else _reads_sizes(name, args, kwargs)
            if counted:
                counts[counted] += 1
            return func(*args, **kwargs)

    with Census():
        yield counts

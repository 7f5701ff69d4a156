"""The census of operations that make the host wait for an accelerator."""

from __future__ import annotations

import torch

from tests.support.device_waits import count_device_waits


def test_reads_of_device_values_are_counted_and_device_only_work_is_not() -> None:
    x = torch.arange(6.0)
    mask = x > 2
    with count_device_waits() as waits:
        x[mask]
        x.sum().item()
        if x.sum() > 0:  # a Python ``if`` on a tensor reads it
            torch.unique(x)
        torch.bincount(x.long())
        torch.linalg.solve(torch.eye(3), torch.ones(3))
        torch.equal(x, x)
        torch.matrix_exp(torch.zeros(2, 3, 3))
        torch.nonzero(x)
        torch.masked_select(x, mask)
        torch.unique_consecutive(x)
        torch.repeat_interleave(x[:2], torch.tensor([1, 2]))
    assert waits == {
        "boolean index": 1,
        "_local_scalar_dense": 2,
        "_unique2": 1,
        "bincount": 1,
        "_linalg_check_errors": 1,
        "equal": 1,
        "linalg_matrix_exp": 1,
        "nonzero": 1,
        "masked_select": 1,
        "unique_consecutive": 1,
        "repeat_interleave": 1,
    }

    with count_device_waits() as waits:
        x[torch.tensor([1, 2])]
        torch.where(mask, x, torch.zeros_like(x))
        torch.linalg.solve_ex(torch.eye(3), torch.ones(3))
        torch.linalg.inv_ex(torch.eye(3))
        x.new_zeros(2).index_add_(0, torch.tensor([0, 1, 1]), x[:3])
        torch.repeat_interleave(x[:2], torch.tensor([1, 2]), output_size=3)
        torch.repeat_interleave(x[:2], 2)
    assert waits == {}

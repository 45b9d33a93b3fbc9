"""is_due: a step-driven callback runs after every N-th optimizer step, once, on the step's last micro-batch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from difflab.callbacks.cadence import is_due


def due_steps(every_n_steps: int, accumulate: int, num_batches: int) -> list[tuple[int, int]]:
    """(global_step, batch_idx) of each on_train_batch_end at which ``is_due`` is true, as Lightning calls it:
    after micro-batch ``batch_idx`` the optimizer has stepped ``(batch_idx + 1) // accumulate`` times."""
    out = []
    for batch_idx in range(num_batches):
        trainer = SimpleNamespace(global_step=(batch_idx + 1) // accumulate, accumulate_grad_batches=accumulate)
        if is_due(trainer, batch_idx, every_n_steps):
            out.append((trainer.global_step, batch_idx))
    return out


@pytest.mark.parametrize("every_n_steps, accumulate", [(1, 1), (4, 1), (3, 2), (5, 4)])
def test_due_once_after_every_nth_optimizer_step_on_its_last_micro_batch(every_n_steps, accumulate):
    num_steps = 20
    due = due_steps(every_n_steps, accumulate, num_steps * accumulate)
    expected_steps = list(range(every_n_steps, num_steps + 1, every_n_steps))
    assert [step for step, _ in due] == expected_steps
    assert [batch_idx for _, batch_idx in due] == [step * accumulate - 1 for step in expected_steps]


def test_never_due_before_the_first_optimizer_step():
    for accumulate in (1, 3):
        for batch_idx in range(accumulate - 1):
            trainer = SimpleNamespace(global_step=0, accumulate_grad_batches=accumulate)
            assert not is_due(trainer, batch_idx, 1)
    assert not is_due(SimpleNamespace(global_step=0, accumulate_grad_batches=1), 0, 1)  # e.g. a hook before any step


def test_due_by_the_global_step_not_by_the_batches_this_process_has_seen():
    """A resumed run's first batch can be step 601 or step 600's last micro-batch: the step decides."""
    assert is_due(SimpleNamespace(global_step=600, accumulate_grad_batches=1), 0, 600)
    assert not is_due(SimpleNamespace(global_step=601, accumulate_grad_batches=1), 0, 600)
    assert is_due(SimpleNamespace(global_step=600, accumulate_grad_batches=2), 1, 600)
    assert not is_due(SimpleNamespace(global_step=600, accumulate_grad_batches=2), 2, 600)

"""TF1 RMSProp and the cosine-by-step schedule against hand-computed values (SPEC e.2)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from farm.config import NB101
from farm.optim import TFRMSprop, cosine_by_step_lr, cosine_by_step_lr_tensor
from farm.train import evaluation_schedule


def _param(values):
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_first_update_by_hand():
    # w = 1, g = 0.5, lr = 0.1, no weight decay:
    #   ms  = 0.9 * 1 + 0.1 * 0.25          = 0.925     (the slot starts at 1, not 0)
    #   mom = 0.9 * 0 + 0.1 * 0.5 / sqrt(0.925 + 1.0) = 0.05 / 1.3874437... = 0.03603749851...
    #   w   = 1 - 0.03603749851...             = 0.96396250149...
    w = _param([1.0])
    optimizer = TFRMSprop([w], lr=0.1, decay=0.9, momentum=0.9, epsilon=1.0)
    w.grad = torch.tensor([0.5], dtype=torch.float64)
    optimizer.step()
    state = optimizer.state[w]
    assert state["ms"].item() == pytest.approx(0.925, abs=1e-15)
    assert state["mom"].item() == pytest.approx(0.0360374985, abs=1e-10)
    assert w.item() == pytest.approx(0.9639625015, abs=1e-10)


def test_two_updates_with_weight_decay_by_hand():
    # Coupled L2: the gradient seen by the statistics is g + wd * w.
    lr, wd = 0.2, 1e-4
    w0, g1, g2 = 2.0, 0.3, -0.7
    w = _param([w0])
    optimizer = TFRMSprop([w], lr=lr, weight_decay=wd)
    w.grad = torch.tensor([g1], dtype=torch.float64)
    optimizer.step()
    w.grad = torch.tensor([g2], dtype=torch.float64)
    optimizer.step()

    e1 = g1 + wd * w0
    ms1 = 0.9 * 1.0 + 0.1 * e1 * e1
    mom1 = lr * e1 / math.sqrt(ms1 + 1.0)
    w1 = w0 - mom1
    e2 = g2 + wd * w1
    ms2 = 0.9 * ms1 + 0.1 * e2 * e2
    mom2 = 0.9 * mom1 + lr * e2 / math.sqrt(ms2 + 1.0)
    w2 = w1 - mom2
    assert w.item() == pytest.approx(w2, abs=1e-12)
    assert optimizer.state[w]["ms"].item() == pytest.approx(ms2, abs=1e-12)
    assert optimizer.state[w]["mom"].item() == pytest.approx(mom2, abs=1e-12)


def test_zero_learning_rate_step_moves_only_the_mean_square():
    # The original's first update (LR 0): weights and momentum stay, ms takes g^2 in.
    w = _param([1.0, -3.0])
    optimizer = TFRMSprop([w], lr=0.0, weight_decay=1e-4)
    w.grad = torch.tensor([2.0, 0.0], dtype=torch.float64)
    optimizer.step()
    assert w.tolist() == [1.0, -3.0]
    assert optimizer.state[w]["mom"].tolist() == [0.0, 0.0]
    e = [2.0 + 1e-4 * 1.0, 1e-4 * -3.0]
    expected_ms = [0.9 + 0.1 * x * x for x in e]
    assert optimizer.state[w]["ms"].tolist() == pytest.approx(expected_ms, abs=1e-15)


def test_differs_from_torch_rmsprop():
    # PyTorch's RMSprop (eps outside the sqrt, square_avg from 0, lr outside the momentum) is not
    # the original: one step from the same state lands elsewhere.
    ours, theirs = _param([1.0]), _param([1.0])
    tf_optimizer = TFRMSprop([ours], lr=0.1)
    torch_optimizer = torch.optim.RMSprop([theirs], lr=0.1, alpha=0.9, eps=1.0, momentum=0.9)
    for p, opt in ((ours, tf_optimizer), (theirs, torch_optimizer)):
        p.grad = torch.tensor([0.5], dtype=torch.float64)
        opt.step()
    assert abs(ours.item() - theirs.item()) > 1e-3


def test_tensor_learning_rate_equals_float_and_many_parameters_update_together():
    torch.manual_seed(0)
    shapes = [(3, 4), (5,), (2, 2, 3)]
    a = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    lr = torch.tensor(0.05)
    opt_a = TFRMSprop(a, lr=0.05, weight_decay=1e-4)
    opt_b = TFRMSprop(b, lr=lr, weight_decay=1e-4)
    for _ in range(3):
        grads = [torch.randn(s) for s in shapes]
        for p, q, g in zip(a, b, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
        lr.fill_(0.05)  # updated in place by a schedule; same value here
        for p, q in zip(a, b, strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-7)
    # A parameter without a gradient is left alone (and gets no slots).
    frozen = torch.nn.Parameter(torch.ones(2))
    optimizer = TFRMSprop([frozen], lr=0.1)
    optimizer.step()
    assert frozen.tolist() == [1.0, 1.0] and not optimizer.state


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(1)
    w = torch.nn.Parameter(torch.randn(6))
    optimizer = TFRMSprop([w], lr=0.1, weight_decay=1e-4)
    w.grad = torch.randn(6)
    optimizer.step()
    # state_dict() shares the slot tensors, which the next step mutates in place: copy it.
    saved_w, saved_state = w.detach().clone(), copy.deepcopy(optimizer.state_dict())
    g = torch.randn(6)
    w.grad = g.clone()
    optimizer.step()
    expected = w.detach().clone()

    w2 = torch.nn.Parameter(saved_w.clone())
    optimizer2 = TFRMSprop([w2], lr=0.1, weight_decay=1e-4)
    optimizer2.load_state_dict(saved_state)
    w2.grad = g.clone()
    optimizer2.step()
    assert torch.equal(w2.detach(), expected)


# ---- schedule ------------------------------------------------------------------------------


def test_cosine_by_step_schedule_by_hand():
    total = NB101.total_steps(4)
    assert total == 625
    assert cosine_by_step_lr(0, total, 0.2) == 0.0  # the forced zero first step
    assert cosine_by_step_lr(1, total, 0.2) == pytest.approx(0.1 * (1 + math.cos(math.pi / 625)), abs=1e-15)
    assert cosine_by_step_lr(1, total, 0.2) == pytest.approx(0.19999874, abs=1e-8)
    assert cosine_by_step_lr(500, 1000, 0.2) == pytest.approx(0.1, abs=1e-15)  # half the base at half
    assert cosine_by_step_lr(250, 1000, 0.2) == pytest.approx(0.1 * (1 + math.sqrt(0.5)), abs=1e-15)
    assert cosine_by_step_lr(total, total, 0.2) == pytest.approx(0.0, abs=1e-15)
    values = [cosine_by_step_lr(k, total, 0.2) for k in range(1, total)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))  # decays every step, no warmup


def test_tensor_schedule_matches_float_schedule():
    steps = torch.arange(0, 626)
    lrs = cosine_by_step_lr_tensor(steps, 625, 0.2)
    expected = torch.tensor([cosine_by_step_lr(int(k), 625, 0.2) for k in steps], dtype=torch.float32)
    torch.testing.assert_close(lrs, expected, rtol=0, atol=1e-7)
    assert lrs[0].item() == 0.0


@pytest.mark.parametrize(
    ("epochs", "halfway", "total"),
    [(4, 312, 625), (12, 937, 1875), (36, 2812, 5625), (108, 8437, 16875)],  # SPEC e.4
)
def test_evaluation_points_of_the_published_budgets(epochs, halfway, total):
    assert evaluation_schedule(epochs, NB101) == [(0.0, 0), (epochs / 2, halfway), (float(epochs), total)]

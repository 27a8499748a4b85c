"""The adapters run HybridOperation and SimAM on (B, N, C) tokens: that path must equal the grid path exactly."""

from __future__ import annotations

import pytest
import torch

from ivtune.modules.ops import HybridOperation, SimAM, grid_to_tokens, tokens_to_grid


@pytest.mark.parametrize("channels", [64, 8, 3])  # 3: no depth-wise part (a quarter of 3 is 0)
@pytest.mark.parametrize("train", [True, False])
def test_hybrid_operation_tokens_equal_grid(channels, train):
    torch.manual_seed(0)
    op = HybridOperation(channels).train(train)
    with torch.no_grad():  # non-trivial BN statistics for the eval case
        op.bn.running_mean.normal_()
        op.bn.running_var.uniform_(0.5, 2.0)
    hw = (5, 7)  # non-square: a swapped grid would show
    x = torch.randn(2, hw[0] * hw[1], channels)
    stats = op.bn.running_mean.clone()
    grid = grid_to_tokens(op(tokens_to_grid(x, hw)))
    stats_grid = op.bn.running_mean.clone()
    op.bn.running_mean.copy_(stats)
    tokens = op.forward_tokens(x, hw)
    torch.testing.assert_close(tokens, grid, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op.bn.running_mean, stats_grid)  # BN sees the same per-channel batch


def test_hybrid_operation_tokens_backward_equals_grid():
    torch.manual_seed(0)
    op, hw = HybridOperation(16).train(), (4, 6)
    x = torch.randn(2, 24, 16)
    op(tokens_to_grid(x, hw)).square().sum().backward()
    grads = [p.grad.clone() for p in op.parameters()]
    op.zero_grad()
    op.forward_tokens(x, hw).square().sum().backward()
    for g, p in zip(grads, op.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)


def test_simam_tokens_equal_grid():
    torch.manual_seed(0)
    x, hw = torch.randn(2, 35, 8), (5, 7)
    torch.testing.assert_close(SimAM().forward_tokens(x), grid_to_tokens(SimAM()(tokens_to_grid(x, hw))))

"""The adapters' fast paths (token layout, folded affines) must compute exactly the docs/METHOD.md formulas."""

from __future__ import annotations

import pytest
import torch

from ivtune.modules.adapters import InternalPromptAdapter
from ivtune.modules.ops import SFT, HybridOperation, SimAM, grid_to_tokens, tokens_to_grid


def reference_grid(op: HybridOperation, x: torch.Tensor) -> torch.Tensor:
    """docs/METHOD.md section 3.2 on a (B, C, H, W) map with the module's own layers: ``y = [DW3(x_a), x_b] + x``, then
    ``fc2(ReLU(BN(fc1(y)))) + y`` with 1x1 convolutions."""
    if op.dwconv is not None:
        x_a, x_b = torch.split(x, [op.partial, op.channels - op.partial], dim=1)
        y = torch.cat([op.dwconv(x_a), x_b], dim=1) + x
    else:
        y = x + x
    return op.fc2(op.act(op.bn(op.fc1(y)))) + y


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
    grid = grid_to_tokens(reference_grid(op, tokens_to_grid(x, hw)))
    stats_grid = op.bn.running_mean.clone()
    op.bn.running_mean.copy_(stats)
    tokens = op.forward_tokens(x, hw)
    torch.testing.assert_close(tokens, grid, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op.bn.running_mean, stats_grid)  # BN sees the same per-channel batch


def test_hybrid_operation_tokens_backward_equals_grid():
    torch.manual_seed(0)
    op, hw = HybridOperation(16).train(), (4, 6)
    x = torch.randn(2, 24, 16)
    reference_grid(op, tokens_to_grid(x, hw)).square().sum().backward()
    grads = [p.grad.clone() for p in op.parameters()]
    op.zero_grad()
    op.forward_tokens(x, hw).square().sum().backward()
    for g, p in zip(grads, op.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)


def test_simam_tokens_equal_grid():
    torch.manual_seed(0)
    x, hw = torch.randn(2, 35, 8), (5, 7)
    torch.testing.assert_close(SimAM().forward_tokens(x), grid_to_tokens(SimAM()(tokens_to_grid(x, hw))))


def test_folded_sft_equals_layernorm_then_affine():
    torch.manual_seed(0)
    sft = SFT(16)
    with torch.no_grad():
        for t in (sft.norm.weight, sft.norm.bias, sft.gamma, sft.beta):
            t.normal_()
    x = torch.randn(2, 5, 16, requires_grad=True)
    reference = sft.norm(x) * sft.gamma + sft.beta
    torch.testing.assert_close(sft(x), reference)
    grads_ref = torch.autograd.grad(reference.square().sum(), [x, *sft.parameters()])
    grads = torch.autograd.grad(sft(x).square().sum(), [x, *sft.parameters()])
    for g, r in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_internal_prompt_adapter_equals_its_formula():
    torch.manual_seed(0)
    ipa, hw = InternalPromptAdapter(16), (3, 4)
    with torch.no_grad():
        ipa.scale.normal_()
        ipa.shift.normal_()
    z = torch.randn(2, 12, 16)
    d = ipa.act(ipa.attn.forward_tokens(ipa.down(ipa.sft.norm(z) * ipa.sft.gamma + ipa.sft.beta)))
    torch.testing.assert_close(ipa(z, hw), ipa.act(ipa.up(d) * ipa.scale + ipa.shift))


def test_hybrid_operation_grid_forward_equals_reference():
    torch.manual_seed(0)
    op = HybridOperation(16).eval()  # eval: the two calls must not see different BN statistics
    x = torch.randn(2, 16, 5, 7)
    torch.testing.assert_close(op(x), reference_grid(op, x), rtol=1e-5, atol=1e-5)

"""``IVBackbone.compile()``: regional compilation of the blocks (docs/METHOD.md section 13, efficiency notes).

The checks use dynamo with the ``eager`` / ``aot_eager`` backends (tracing and autograd, no C++ compiler): no graph
break inside a block, one graph per block variant whatever the depth, recompiles bounded by the input sizes, the
CPU fallback of CUDA graphs, outputs and gradients equal to the eager ones; the inductor checks (fp32, bf16
autocast, gradient checkpointing) compile C++. `make test` (CI) runs the graph-break check on a ViT block, the CUDA
graphs fallback and the config switches; the rest is ``slow`` (`make test-all`): dynamo takes ~10 s to start and
inductor's first compile in a process ~30 s on 2 cores.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from ivtune import build_backbone
from ivtune.config import ModelConfig
from ivtune.engine.backbone import backbone_from_config

from ..helpers import TINY, pair


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def block_calls(model, vis, ir) -> list[tuple[torch.nn.Module, torch.Tensor, dict]]:
    """(block, tokens, keywords) of every block call of one forward, as the family loop makes them."""
    calls = []
    run = model.run_block

    def spy(blk, x, **kwargs):
        calls.append((blk, x, kwargs))
        return run(blk, x, **kwargs)

    model.run_block = spy
    try:
        model(vis, ir)
    finally:
        del model.run_block
    return calls


def assert_one_graph_per_block(key: str, train: bool) -> None:
    """Every block call of a forward compiles with ``fullgraph=True`` (a graph break would raise) into one graph."""
    name, kwargs, _, hw = TINY[key]
    model = build_backbone(name, **kwargs).train(train)
    # compiled (tracing only): the blocks then prepare their adapter weights inside the graph, as compile() makes them
    model.compile(backend="eager", cuda_graphs=False)
    vis, ir = pair(hw)
    with torch.no_grad():
        calls = block_calls(model, vis, ir)
    for blk, x, kw in calls[:1] + calls[-1:]:  # the first block (z = P0) and the last
        torch._dynamo.reset()
        counter = CompileCounterWithBackend("eager")
        run = torch.compile(lambda b, t, **k: b(t, **k), backend=counter, fullgraph=True, dynamic=False)
        with torch.set_grad_enabled(train):
            run(blk, x.detach().requires_grad_(train), **kw)
        assert counter.frame_count == 1


def test_no_graph_break_inside_a_vit_block():
    assert_one_graph_per_block("vit", train=True)


@pytest.mark.slow
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("key", list(TINY))
def test_no_graph_break_inside_any_block(key, train):
    assert_one_graph_per_block(key, train)


def run_step(model, vis, ir, seed: int = 1):
    torch.manual_seed(seed)  # the same dropout masks for the eager and the compiled model (aot_eager keeps RNG)
    outs = model(vis, ir)
    sum((o * (i + 1)).sum() for i, o in enumerate(outs)).backward()
    return [o.detach() for o in outs], {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def assert_same_step(a, b, rtol: float, atol: float) -> None:
    for x, y in zip(a[0], b[0], strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)
    assert a[1].keys() == b[1].keys() and a[1]
    # relative to the largest gradient: a bias before a train-mode BatchNorm has a true gradient of 0, so its
    # values are rounding noise of the other terms
    scale = max(float(g.abs().max()) for g in b[1].values())
    for n, g in a[1].items():
        torch.testing.assert_close(g, b[1][n], rtol=rtol, atol=atol * scale, msg=n)


@pytest.mark.slow
def test_compiled_vit_equals_eager_and_graphs_do_not_grow_with_depth():
    name, kwargs, _, hw = TINY["vit"]
    vis, ir = pair(hw)
    counts = {}
    for depth in (2, 4):
        torch._dynamo.reset()
        torch.manual_seed(0)
        eager = build_backbone(name, **{**kwargs, "depth": depth}).train()
        compiled = copy.deepcopy(eager)
        counter = CompileCounterWithBackend("aot_eager")
        compiled.compile(backend=counter)
        assert_same_step(run_step(compiled, vis, ir), run_step(eager, vis, ir), rtol=1e-5, atol=1e-6)
        counts[depth] = counter.frame_count
        run_step(compiled, vis, ir)  # a second step at the same size compiles nothing
        assert counter.frame_count == counts[depth]
    # block 0 reads the prompt P0, the others the previous block's patch tokens (another layout): two graphs
    assert counts[2] == counts[4] == 2


@pytest.mark.slow
def test_recompiles_are_bounded_by_the_input_sizes():
    name, kwargs, _, _ = TINY["vit"]
    model = build_backbone(name, **kwargs).eval()
    counter = CompileCounterWithBackend("eager")
    model.compile(backend=counter, cuda_graphs=False)
    with torch.no_grad():
        model(*pair((64, 96)))
        one = counter.frame_count
        model(*pair((96, 64)))
        assert counter.frame_count == 2 * one  # a new size: each block variant once more
        model(*pair((64, 96)))
        model(*pair((96, 64)))
    assert counter.frame_count == 2 * one  # sizes seen before reuse their graphs
    assert torch._dynamo.config.recompile_limit >= 16 * 4


def test_cuda_graphs_fall_back_on_cpu_with_a_message():
    name, kwargs, _, hw = TINY["vit"]
    eager = build_backbone(name, **kwargs).eval()
    compiled = copy.deepcopy(eager).compile(backend="eager")  # cuda_graphs=True by default
    vis, ir = pair(hw)
    with torch.no_grad():
        with pytest.warns(UserWarning, match="CUDA graphs need a CUDA device; inference on cpu runs the compiled"):
            out = compiled(vis, ir)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # said once, not per forward
            again = compiled(vis, ir)
        want = eager(vis, ir)
    for a, b, c in zip(out, again, want, strict=True):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)


def test_model_config_compile_compiles_the_backbone():
    name, kwargs, _, _ = TINY["vit"]
    on = backbone_from_config(ModelConfig(backbone=name, timm_kwargs=kwargs, compile=True))
    off = backbone_from_config(ModelConfig(backbone=name, timm_kwargs=kwargs))
    assert on.compile_options == {"dynamic": False} and on.cuda_graphs
    assert off.compile_options is None


def test_dual_branch_compiles_both_branches():
    name, kwargs, _, _ = TINY["swin"]
    model = build_backbone(name, method="dual-branch", **kwargs).compile(backend="eager")
    assert model.compile_options is not None and model.ir_branch.compile_options is not None


# ---------------------------------------------------------------------------------------------------- inductor
def inductor_pair(key: str, **method_config):
    name, kwargs, _, hw = TINY[key]
    torch.manual_seed(0)
    # no dropout / drop path: inductor draws its own random numbers
    eager = build_backbone(name, method_config={"dropout": 0.0, **method_config},
                           **{**kwargs, "drop_path_rate": 0.0}).train()
    return eager, copy.deepcopy(eager).compile(), pair(hw)


@pytest.mark.slow  # inductor's first compile in a process builds its C++ runtime: ~30 s on 2 cores
@pytest.mark.parametrize("key", ["vit", "swin"])
def test_inductor_fp32_equals_eager(key):
    eager, compiled, (vis, ir) = inductor_pair(key)
    assert_same_step(run_step(compiled, vis, ir), run_step(eager, vis, ir), rtol=1e-4, atol=1e-5)
    eager.eval()
    compiled.eval()
    with torch.no_grad(), pytest.warns(UserWarning, match="CUDA graphs need a CUDA device"):
        for a, b in zip(compiled(vis, ir), eager(vis, ir), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inductor_bf16_autocast_and_checkpointing_equal_eager():
    eager, compiled, (vis, ir) = inductor_pair("swin")
    for m in (eager, compiled):
        m.set_grad_checkpointing(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = run_step(compiled, vis, ir), run_step(eager, vis, ir)
    for x, y in zip(a[0], b[0], strict=True):  # bf16: compare to the spread of the features
        torch.testing.assert_close(x, y, rtol=0, atol=0.05 * float(y.abs().max()))
    scale = max(float(g.abs().max()) for g in b[1].values())
    for n, g in a[1].items():
        torch.testing.assert_close(g, b[1][n], rtol=0.05, atol=0.01 * scale, msg=n)

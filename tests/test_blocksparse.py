"""The block-sparse product of the large masked layers (bnaf.flows.blocksparse) against the dense
masked product (Eq. 7-8, Appendix C) written with plain autograd, in float64: outputs, log
diagonal blocks and every gradient, for each (d, a, b) the experiment grids build."""

from __future__ import annotations

import itertools

import pytest
import torch

from bnaf.flows import BNAF, MaskedBlockLinear
from bnaf.flows.blocksparse import panel_bounds, panels_for

# (d, k): UCI dimensions with H in {10d, 20d, 40d} (Section 5.3), the VAE's d = 64 with
# H in {2d, 4d, 8d} (Section 5.4), and d = 1.
GRID = [(d, k) for d in (6, 8, 21, 43, 63) for k in (10, 20, 40)] + [(64, k) for k in (2, 4, 8)]
SHAPES = sorted(
    {(d, a, b) for d, k in GRID for a, b in ((k, 1), (k, k), (1, k))}
    | {(1, 1, 1), (1, 5, 1), (1, 1, 5), (1, 4, 4)}
)


def _reference(layer: MaskedBlockLinear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 8 + Appendix C with plain autograd: v = exp(B) on the diagonal blocks, B below, 0
    above; w = exp(s) v / ||v|| per row; y = x w^T + bias; log of w's diagonal blocks."""
    d, a, b = layer.dim, layer.out_factor, layer.in_factor
    weight = layer.weight
    v = torch.where(layer.mask_d, weight.exp(), torch.where(layer.mask_o, weight, 0.0))
    w = layer.log_scale.exp() * v / v.norm(dim=-1, keepdim=True)
    log_diag = w.view(d, a, d, b).diagonal(dim1=0, dim2=2).permute(2, 0, 1).log()
    return x @ w.T + layer.bias, log_diag


def _layer(d: int, a: int, b: int, seed: int = 0) -> MaskedBlockLinear:
    torch.manual_seed(seed)
    layer = MaskedBlockLinear(d, b, a)
    with torch.no_grad():  # away from the initialisation, and garbage in the zero blocks
        layer.weight.add_(torch.randn_like(layer.weight))
        layer.log_scale.add_(torch.randn_like(layer.log_scale))
    return layer


def _values_and_grads(layer, x, fn, grad_y, grad_diag) -> list[torch.Tensor]:
    y, log_diag = fn(layer, x)
    loss = (y * grad_y).sum() + (log_diag * grad_diag).sum()
    params = (x, layer.weight, layer.log_scale, layer.bias)
    return [y, log_diag, *torch.autograd.grad(loss, params)]


def _panel_counts(d: int, a: int, b: int) -> list[int]:
    """Two panels, the automatic count, and many (one block row each where d is small)."""
    automatic = panels_for(d, d * a, d * b, torch.device("cpu"))
    return sorted({p for p in (2, automatic, d if d <= 21 else 7) if 1 < p <= d} or {2})


@pytest.mark.parametrize("d,a,b", SHAPES, ids=lambda v: str(v))
def test_block_sparse_equals_dense_masked_product(d: int, a: int, b: int) -> None:
    layer = _layer(d, a, b)
    x = torch.randn(3, d * b, requires_grad=True)
    grad_y, grad_diag = torch.randn(3, d * a), torch.randn(d, a, b)
    expected = _values_and_grads(layer, x, _reference, grad_y, grad_diag)
    for panels in _panel_counts(d, a, b):
        layer.panels = panels
        got = _values_and_grads(layer, x, lambda m, v: m(v), grad_y, grad_diag)
        for name, g, e in zip(("y", "log_diag", "x", "weight", "s", "bias"), got, expected):
            torch.testing.assert_close(g, e, msg=lambda m, n=name, p=panels: f"{n} P={p}: {m}")
        # the zero blocks: their gradient is exactly zero although the weight holds values
        assert torch.all(got[3][layer.mask_u] == 0)


@pytest.mark.parametrize("d,a,b", [(6, 4, 3), (9, 2, 5), (13, 3, 1)])
def test_block_sparse_weight_is_normalised_and_lower_triangular(d: int, a: int, b: int) -> None:
    """The map the panels apply, read back column by column (x = identity): rows of norm
    exp(s) (Appendix C), exact zeros above the block diagonal, positive diagonal blocks."""
    layer = _layer(d, a, b, seed=1)
    layer.panels = 3
    with torch.no_grad():
        y, log_diag = layer(torch.eye(d * b))
        w = (y - layer.bias).T  # (d a, d b)
    torch.testing.assert_close(w.norm(dim=-1), layer.log_scale.exp().squeeze(-1))
    assert torch.all(w[layer.mask_u] == 0)
    blocks = w.view(d, a, d, b)
    for i in range(d):
        torch.testing.assert_close(blocks[i, :, i, :].log(), log_diag[i])


def test_zero_blocks_are_never_read() -> None:
    """Whatever the zero blocks hold (a loaded checkpoint, say), outputs do not change."""
    layer = _layer(10, 3, 4)
    layer.panels = 4
    x = torch.randn(5, 40)
    with torch.no_grad():
        y1, d1 = layer(x)
        layer.weight[layer.mask_u] = torch.randn(int(layer.mask_u.sum())) * 1e3
        y2, d2 = layer(x)
    assert torch.equal(y1, y2) and torch.equal(d1, d2)


@pytest.mark.parametrize("panels", [2, 3, 5])
def test_flow_with_panels_equals_dense(panels: int) -> None:
    """A whole B-NAF (both Jacobian chains, residuals, a first layer whose input needs no
    gradient) gives the same log-density and gradients with either product."""
    models = []
    for p in (1, panels):
        torch.manual_seed(0)
        model = BNAF(5, flows=2, layers=2, hidden_factor=3)
        for m in model.modules():
            if isinstance(m, MaskedBlockLinear):
                m.panels = p
        models.append(model)
    x = torch.randn(7, 5)
    results = []
    for model in models:
        logp = model.log_prob(x)
        results.append([logp, *torch.autograd.grad(logp.sum(), list(model.parameters()))])
    for g, e in zip(*results):
        torch.testing.assert_close(g, e)
    assert models[1](torch.zeros(0, 5))[0].shape == (0, 5)  # an empty batch


@pytest.mark.float32
def test_float32_within_float32_rounding_of_float64() -> None:
    layer = _layer(21, 20, 20)
    layer.panels = panels_for(21, 420, 420, torch.device("cpu"))
    x = torch.randn(16, 420)
    ref, ref_diag = _reference(layer.double(), x.double())
    y, log_diag = layer.float()(x.float())
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_diag.double(), ref_diag, rtol=1e-5, atol=1e-5)


def test_panel_bounds_tile_the_block_rows() -> None:
    for d, panels in itertools.product(range(1, 70), range(1, 17)):
        bounds = panel_bounds(d, panels)
        assert bounds[0][0] == 0 and bounds[-1][1] == d
        assert all(i1 > i0 for i0, i1 in bounds) and len(bounds) == min(d, panels)
        assert all(p[1] == q[0] for p, q in zip(bounds, bounds[1:]))
        heights = [i1 - i0 for i0, i1 in bounds]
        assert max(heights) - min(heights) <= 1  # near-equal: least covered area


def test_panels_only_where_they_pay() -> None:
    cpu = torch.device("cpu")
    # the BSDS300-like hidden layer (d = 63, H = 20d) skips its zero blocks ...
    assert panels_for(63, 1260, 1260, cpu) > 1
    # ... small layers, d = 1 and the first and last layers of a flow keep the dense product
    assert panels_for(6, 240, 240, cpu) == 1
    assert panels_for(1, 4000, 4000, cpu) == 1
    assert panels_for(63, 1260, 63, cpu) == 1 and panels_for(63, 63, 1260, cpu) == 1
    for d, k in GRID:
        assert panels_for(d, d * k, d * k, cpu) <= d
    # the documented edges: 4 block rows at least, MIN_ENTRIES entries at least, the CPU only
    from bnaf.flows.blocksparse import MIN_ENTRIES

    assert panels_for(4, 1024, 1024, cpu) == 4 and panels_for(3, 1024, 1024, cpu) == 1
    assert panels_for(8, MIN_ENTRIES // 1024, 1024, cpu) == 4
    assert panels_for(8, MIN_ENTRIES // 1024 - 1, 1024, cpu) == 1
    for device in ("cuda", "meta"):  # a GPU keeps the dense product (fewer launches)
        assert panels_for(63, 1260, 1260, torch.device(device)) == 1


def test_panels_choose_the_product(monkeypatch) -> None:
    """``panels = 1`` is the dense masked product, more is the block-sparse one, and ``None``
    leaves it to :func:`panels_for` (dense for a small layer, panels for a BSDS300-sized one)."""
    import bnaf.flows.layers as layers

    calls: list[int] = []
    real = layers.block_sparse_linear

    def record(*args, **kwargs):
        calls.append(args[-1])  # the panel count
        return real(*args, **kwargs)

    monkeypatch.setattr(layers, "block_sparse_linear", record)
    small, large = _layer(4, 3, 2), _layer(63, 20, 20)
    for layer, panels, expected in [(small, 1, []), (small, 2, [2]), (small, None, [])]:
        layer.panels, calls[:] = panels, []
        layer(torch.randn(5, layer.weight.shape[1]))
        assert calls == expected, (panels, calls)
    large.panels, calls[:] = None, []
    large(torch.randn(2, large.weight.shape[1]))
    assert calls == [panels_for(63, 1260, 1260, torch.device("cpu"))] and calls[0] > 1


@pytest.mark.parametrize("panels", [1, 3])
def test_a_non_contiguous_weight_gives_the_same_layer(panels: int) -> None:
    """A weight stored transposed (as some loaders leave it) is read as the same matrix."""
    layer = _layer(5, 3, 2)
    layer.panels = panels
    x = torch.randn(7, 10)
    y, d = layer(x)
    with torch.no_grad():
        layer.weight = torch.nn.Parameter(layer.weight.detach().T.contiguous().T)
    assert not layer.weight.is_contiguous()
    y2, d2 = layer(x)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(d2, d)


def test_a_layer_without_a_bias() -> None:
    """``block_sparse_linear(bias=None)`` is ``x W^T`` alone, forward and backward."""
    from bnaf.flows.blocksparse import block_sparse_linear

    layer = _layer(9, 3, 2)
    x = torch.randn(4, 18, requires_grad=True)
    grad_y = torch.randn(4, 27)
    y, _ = block_sparse_linear(x, layer.weight, layer.log_scale, None, (9, 3, 2), panels=3)
    ref, _ = _reference(layer, x)
    torch.testing.assert_close(y, ref - layer.bias)
    got = torch.autograd.grad((y * grad_y).sum(), (x, layer.weight, layer.log_scale))
    want = torch.autograd.grad(
        ((ref - layer.bias) * grad_y).sum(), (x, layer.weight, layer.log_scale)
    )
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)

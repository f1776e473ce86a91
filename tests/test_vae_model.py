"""The VAE of Section 5.4 (van den Berg et al., 2018, Appendix A) against independent statements:
the gated layers' formula, the likelihoods in closed form, the layer table of the Sylvester
architecture, and what a wrong construction is refused with.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bnaf.flows.amortised import AmortisedBNAF
from bnaf.vae.model import VAE, GatedConv2d, GatedConvTranspose2d


@pytest.mark.parametrize("transposed", [False, True])
def test_a_gated_layer_is_h_times_the_sigmoid_of_g(transposed: bool) -> None:
    """``h(x) * sigmoid(g(x))``, no activation on ``h`` (van den Berg, Appendix A)."""
    torch.manual_seed(0)
    layer = GatedConvTranspose2d(3, 4, 3, 2, 1, 1) if transposed else GatedConv2d(3, 4, 3, 1, 1)
    x = torch.randn(2, 3, 5, 5)
    h, g = layer.h(x), layer.g(x)
    expected = h / (1.0 + torch.exp(-g))
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_bernoulli_log_likelihood_in_closed_form() -> None:
    """``sum_pixels x log s(l) + (1 - x) log(1 - s(l))`` per image, ``s`` the logistic."""
    torch.manual_seed(1)
    vae = VAE((1, 28, 28), "bernoulli")
    x = (torch.rand(3, 1, 28, 28) < 0.4).double()
    logits = torch.randn(3, 1, 28, 28) * 3.0
    p = 1.0 / (1.0 + torch.exp(-logits))
    expected = (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(vae.log_px(x, logits), expected, rtol=1e-10, atol=1e-9)
    assert (vae.log_px(x, logits) < 0).all()


def test_categorical_log_likelihood_reads_the_pixel_level() -> None:
    """Frey faces: pixel values ``k / 255`` are class ``k`` of a 256-way softmax; the
    log-likelihood sums ``log softmax(l)[k]`` over the pixels."""
    torch.manual_seed(2)
    vae = VAE((1, 28, 20), "categorical")
    levels = torch.randint(0, 256, (2, 1, 28, 20))
    x = levels.double() / 255.0
    logits = torch.randn(2, 256, 1, 28, 20)
    log_soft = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    expected = log_soft.gather(1, levels.unsqueeze(1)).flatten(1).sum(1)
    torch.testing.assert_close(vae.log_px(x, logits), expected, rtol=1e-10, atol=1e-9)


def _table(seq: nn.Sequential) -> list[tuple]:
    rows = []
    for layer in seq:
        conv = layer.h if hasattr(layer, "h") else layer
        rows.append(
            (type(layer).__name__, conv.in_channels, conv.out_channels, conv.kernel_size,
             conv.stride, conv.padding, getattr(conv, "output_padding", (0, 0)))
        )  # fmt: skip
        if hasattr(layer, "g"):  # the gate is the same convolution
            g = layer.g
            assert (g.in_channels, g.out_channels, g.kernel_size, g.stride, g.padding) == (
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
            )
    return rows


G, T = "GatedConv2d", "GatedConvTranspose2d"


@pytest.mark.parametrize("shape, last", [((1, 28, 28), (7, 7)), ((1, 28, 20), (7, 5))])
def test_the_architecture_is_the_sylvester_one(shape: tuple, last: tuple) -> None:
    """Appendix A of van den Berg et al. (their code's gated convolutions): kernel 5, stride 2
    in the 2nd and 4th encoder layers, a last layer spanning the 7x7 (7x5) map to 256 units;
    the decoder mirrors it; Bernoulli logits by a 1x1 convolution."""
    vae = VAE(shape, "bernoulli")
    k5, s1, s2, p2, p0, o0, o1 = (5, 5), (1, 1), (2, 2), (2, 2), (0, 0), (0, 0), (1, 1)
    assert _table(vae.encoder) == [
        (G, 1, 32, k5, s1, p2, o0), (G, 32, 32, k5, s2, p2, o0), (G, 32, 64, k5, s1, p2, o0),
        (G, 64, 64, k5, s2, p2, o0), (G, 64, 64, k5, s1, p2, o0), (G, 64, 256, last, s1, p0, o0),
    ]  # fmt: skip
    assert _table(vae.decoder) == [
        (T, 64, 64, last, s1, p0, o0), (T, 64, 64, k5, s1, p2, o0), (T, 64, 32, k5, s2, p2, o1),
        (T, 32, 32, k5, s1, p2, o0), (T, 32, 32, k5, s2, p2, o1), (T, 32, 32, k5, s1, p2, o0),
    ]  # fmt: skip
    out = vae.p_out
    assert (out.in_channels, out.out_channels, out.kernel_size, out.padding) == (32, 1, (1, 1), p0)
    assert (vae.q_mean.in_features, vae.q_mean.out_features) == (256, 64)
    assert (vae.q_var.in_features, vae.q_var.out_features) == (256, 64)
    x = torch.rand(2, *shape)
    assert vae.encoder(x).shape == (2, 256, 1, 1)
    assert vae.decode(torch.randn(2, 64)).shape == (2, *shape)


def test_the_categorical_head_has_256_levels_per_pixel() -> None:
    """Frey faces: a 5x5 convolution to 256 maps, then a 1x1 one to 256 logits per channel."""
    head = VAE((1, 28, 20), "categorical").p_out
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in head] == [
        (32, 256, (5, 5), (2, 2)), (256, 256, (1, 1), (0, 0))]  # fmt: skip
    assert sum(p.numel() for p in head.parameters()) == 32 * 256 * 25 + 256 + 256 * 256 + 256


def test_a_wrong_construction_is_refused_with_its_reason() -> None:
    with pytest.raises(ValueError, match="unsupported image shape .*expected 28x28 or 28x20"):
        VAE((1, 32, 32), "bernoulli")
    with pytest.raises(ValueError, match="unknown likelihood 'gaussian'"):
        VAE((1, 28, 28), "gaussian")  # type: ignore[arg-type]
    flow = AmortisedBNAF(8, flows=1, hidden_factor=2)
    with pytest.raises(ValueError, match="^the flow's dimension must equal the latent size$"):
        VAE((1, 28, 28), "bernoulli", latent=64, flow=flow)


def test_the_default_latent_size_is_the_papers() -> None:
    assert VAE((1, 28, 28), "bernoulli").latent == 64  # Section 5.4: latent size 64
    assert math.isclose(VAE((1, 28, 28), "bernoulli").q_mean.out_features, 64)

r"""A training loss through ``torch.compile``, with the eager code as the reference.

A B-NAF step on a small model (POWER-, GAS-, MINIBOONE-like) is hundreds of small operations
whose per-call overhead costs more than their arithmetic; ``torch.compile`` fuses the
element-wise work of the flow's forward and backward passes into a few generated kernels
(measured in ``benchmarks/README.md``). The compiled graph cannot branch on a tensor's value,
so the fast scaled Jacobian chain (Eq. 10-11 in the linear domain,
:func:`bnaf.flows.chain.chain_scaled`) runs with its underflow check *deferred*: the samples it
cannot give exactly come out as NaN, and :class:`CompiledLoss` then recomputes the whole loss
with the eager code, which takes the exact log-domain chain for them. Reading that flag is
free on the CPU and one synchronisation a step on a GPU.

The eager path stays the reference: evaluation never goes through here, and a compiled
run's trajectory differs from the eager one's only by the rounding of the fused kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from bnaf.core.errors import BnafError
from bnaf.flows.logjac import fallback_decision

__all__ = ["CompiledLoss", "compile_errors"]


@contextlib.contextmanager
def compile_errors() -> Iterator[None]:
    r"""Turn a failure of ``torch.compile`` (its tracer, the generated code, the C++ toolchain
    or Triton it needs; the backward graph is compiled at the first backward pass, so wrap
    that too) into one :class:`BnafError` line."""
    try:
        yield
    except RuntimeError as e:
        if not type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise
        cause = getattr(e, "inner_exception", None) or e  # what the backend itself raised
        text = str(cause).strip()
        first = text.splitlines()[0][:200] if text else "no message"
        raise BnafError(
            f"torch.compile failed ({type(cause).__name__}: {first}); "
            "set compile: false in the params to train with the eager code"
        ) from None


class CompiledLoss:
    r"""``loss_fn(*args)`` compiled, falling back to ``loss_fn`` itself where the compiled
    graph's loss is not finite (the deferred fallback of the scaled chain, or a diverging
    step, which the eager code then reports as it always does).

    Arguments:
        loss_fn: a function of tensors and modules returning a loss tensor (any shape).
        backend: ``torch.compile``'s backend (``"inductor"`` generates the fused kernels;
            ``"eager"`` only traces, for tests; or a backend function).
    """

    def __init__(self, loss_fn: Callable[..., Tensor], backend: str | Callable = "inductor"):
        self.loss_fn = loss_fn
        # dynamic=False: a run sees two batch sizes (the full batches and an epoch's last),
        # each compiled once, with shapes known to the generated kernels
        self.compiled = torch.compile(loss_fn, backend=backend, dynamic=False)
        self.fallbacks = 0  # steps recomputed eagerly, for the run's record

    def __call__(self, *args: Any) -> Tensor:
        with fallback_decision("deferred"), compile_errors():
            loss = self.compiled(*args)
        if bool(torch.isfinite(loss).all()):
            return loss
        self.fallbacks += 1
        return self.loss_fn(*args)

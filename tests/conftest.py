"""Shared fixtures: paths of the checkout and its params, a float64 default dtype, and torch's
thread count put back after every test.

Every test runs with ``torch.get_default_dtype() == torch.float64`` (properties are checked in
double precision, as in the conventions); a test that is about float32 behaviour (the
pipeline's own training dtype) says so with ``@pytest.mark.float32``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "float32: keep torch's float32 default dtype")
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "threads: runs torch on more than one thread")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # mutmut forks a child per mutant from a process that ran the tests once; OpenMP's thread
    # pool does not survive a fork, so a child that starts a team of two threads waits
    # forever. Under mutation testing (mutmut sets MUTANT_UNDER_TEST in every phase) those
    # tests are left out, in the first run and in the children alike.
    if "MUTANT_UNDER_TEST" in os.environ and item.get_closest_marker("threads"):
        pytest.skip("more than one torch thread: not under mutation testing (fork)")


@pytest.fixture(autouse=True)
def float64_default(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("float32"):
        yield
        return
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@pytest.fixture(autouse=True)
def torch_threads() -> Iterator[None]:
    r"""Put torch's thread count back after each test (a training stage sets it from its
    params). A process left with a larger pool than it started with would hand a broken
    thread pool to any child it forks (mutation testing forks one per mutant), which then
    waits forever in its first parallel operation."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@pytest.fixture
def root() -> Path:
    """The checkout (Snakefile, params/, workflow/)."""
    return ROOT


@pytest.fixture(params=["quick", "paper"])
def budget_params(request: pytest.FixtureRequest) -> Path:
    """params/quick and params/paper in turn."""
    return ROOT / "params" / request.param


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small tensors: one thread avoids oversubscribing the shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

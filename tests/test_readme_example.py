"""The README's "Use B-NAF in your own code" example runs as written, in torch's float32
default as a user would run it; its own asserts are the checks (log-density of the transformed
distribution, reparameterised samples, exact sampling of a bounded flow), and the conditional
samples land near the mean the example says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

SECTION = "## Use B-NAF in your own code"


def _example(readme: Path) -> str:
    text = readme.read_text()
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    after = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", after, flags=re.S)
    assert len(blocks) == 1, "the section should hold one python example"
    return blocks[0]


@pytest.mark.float32
@pytest.mark.usefixtures("one_thread")
def test_readme_example_runs(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(_example(root / "README.md"), "README.md example", "exec"), namespace)
    at_one = namespace["at_one"]
    assert isinstance(at_one, torch.Tensor) and at_one.shape == (500, 2)
    # x | c = 1 ~ N((1, -1), 0.25 I): 500 draws have a standard error of ~0.022 per mean
    assert torch.allclose(at_one.mean(0), torch.tensor([1.0, -1.0]), atol=0.15)
    assert "tensor(" in capsys.readouterr().out

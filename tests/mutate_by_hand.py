r"""Hand-made mutants: plausible single bugs that would corrupt published-comparable numbers.

``make mutate`` runs this after mutmut. It covers the bugs of the issue that motivated the
mutation tests and the functions mutmut leaves alone (those under ``@torch.no_grad()`` or
another decorator): each mutant is applied to a copy of the checkout, the tests named beside it
run there, and a mutant that no test kills is reported. Exit status 1 if any survives.

Usage: ``python tests/mutate_by_hand.py [NAME-SUBSTRING ...]`` from the checkout's root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (name, file, original text, mutated text, test files that must kill it)
MUTANTS: list[tuple[str, str, str, str, list[str]]] = [
    ("flip is the identity", "bnaf/flows/layers.py",
     "torch.arange(dim - 1, -1, -1)", "torch.arange(dim)", ["tests/test_permutation.py"]),
    ("Polyak weights swapped", "bnaf/core/optim.py",
     "_foreach_mul_(self.average, self.rate)\n        torch._foreach_add_(self.average, "
     "self.params, alpha=1.0 - self.rate)",
     "_foreach_mul_(self.average, 1.0 - self.rate)\n        torch._foreach_add_(self.average, "
     "self.params, alpha=self.rate)", ["tests/test_polyak.py"]),
    ("Polyak update before the optimiser step", "bnaf/uci/trainer.py",
     "        self.optimizer.step()\n        self.polyak.update()",
     "        self.polyak.update()\n        self.optimizer.step()",
     ["tests/test_polyak.py"]),
    ("Polyak swap copies nothing back", "bnaf/core/optim.py",
     "            p.copy_(avg)\n", "", ["tests/test_polyak.py"]),
    ("reported LL is a mean of batch means", "bnaf/uci/train.py",
     '"log_likelihood": s.mean,', '"log_likelihood": batch_means_mean(values, batch),',
     ["tests/test_reported_model.py"]),
    ("UCI reports the last epoch", "bnaf/uci/train.py",
     "    trainer.load_weights(trainer.best)\n", "", ["tests/test_reported_model.py"]),
    ("VAE reports the last epoch", "bnaf/vae/train.py",
     '    model.load_state_dict(state["best_state"])\n', "", ["tests/test_reported_model.py"]),
    ("last partial training batch dropped", "bnaf/uci/trainer.py",
     "for start in range(0, n, bs):", "for start in range(0, n - bs + 1, bs):",
     ["tests/test_reported_model.py"]),
    ("last partial evaluation batch dropped", "bnaf/core/stats.py",
     "for i in range(0, len(x), batch_size)]", "for i in range(0, len(x) - batch_size + 1, "
     "batch_size)]", ["tests/test_stats_means.py"]),
    ("selection by test LL", "bnaf/uci/select.py",
     'key=lambda c: (summary[c]["validation_mean"]', 'key=lambda c: (summary[c]["test_mean"]',
     ["tests/test_selection_leak.py"]),
    ("z0 = mu + var * eps", "bnaf/vae/model.py",
     "z0 = mu + var.sqrt() * eps", "z0 = mu + var * eps", ["tests/test_vae_posterior.py"]),
    ("log q with log sqrt(var)", "bnaf/vae/model.py",
     "eps.square() + var.log() + LOG_2PI", "eps.square() + var.sqrt().log() + LOG_2PI",
     ["tests/test_vae_posterior.py"]),
    ("importance NLL without the 1/S", "bnaf/vae/evaluate.py",
     "out.append(-(running - math.log(samples)))", "out.append(-running)",
     ["tests/test_vae_nll.py"]),
    ("importance weights with + log q", "bnaf/vae/evaluate.py",
     "log_pz - log_q", "log_pz + log_q", ["tests/test_vae_nll.py"]),
    ("-ELBO with the KL subtracted", "bnaf/vae/evaluate.py",
     "out.append(-log_px + beta * kl)", "out.append(-log_px - beta * kl)",
     ["tests/test_vae_nll.py"]),
    ("Adam without eps", "bnaf/core/optim.py",
     '            torch._foreach_add_(denom, group["eps"])\n', "", ["tests/test_optim.py"]),
    ("Adam without bias correction", "bnaf/core/optim.py",
     'group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)', 'group["lr"]',
     ["tests/test_optim.py"]),
    ("fused Adam with eps not rescaled", "bnaf/core/optim.py",
     'eps=group["eps"] / math.sqrt(1 - beta2**step),', 'eps=group["eps"],',
     ["tests/test_optim.py"]),
    ("fused_adam ignored by the trainer", "bnaf/uci/trainer.py",
     "fused=tp.fused_adam,", "fused=False,", ["tests/test_train_runs.py"]),
    ("paper polyak 0.98", "params/paper/uci.yaml",
     "polyak: 0.998", "polyak: 0.98", ["tests/test_paper_hyperparameters.py"]),
    ("paper patience 10", "params/paper/uci.yaml",
     "patience: 20", "patience: 10", ["tests/test_paper_hyperparameters.py"]),
    ("paper VAE latent 32", "params/paper/vae.yaml",
     "latent: 64", "latent: 32", ["tests/test_paper_hyperparameters.py"]),
]  # fmt: skip


def run(name: str, path: str, old: str, new: str, tests: list[str], work: Path) -> bool:
    """Apply one mutant in ``work``, run its tests there, restore; True if killed."""
    target = work / path
    source = target.read_text()
    if source.count(old) != 1:
        raise SystemExit(f"{name}: the original text occurs {source.count(old)} times in {path}")
    target.write_text(source.replace(old, new))
    try:
        env = {**os.environ, "PYTHONPATH": str(work), "OMP_NUM_THREADS": "1"}
        args = ["-m", "pytest", "-x", "-q", "-p", "no:benchmark", "-p", "no:cacheprovider"]
        result = subprocess.run(
            [sys.executable, *args, *tests], cwd=work, env=env, capture_output=True, text=True
        )
    finally:
        target.write_text(source)
    return result.returncode != 0


def main(selected: list[str]) -> int:
    chosen = [m for m in MUTANTS if not selected or any(s in m[0] for s in selected)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "checkout"
        for part in ("bnaf", "params", "tests", "pyproject.toml"):
            src = ROOT / part
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / part)
        survivors = []
        for name, path, old, new, tests in chosen:
            killed = run(name, path, old, new, tests, work)
            print(f"{'killed  ' if killed else 'SURVIVED'} {name}", flush=True)
            if not killed:
                survivors.append(name)
    print(f"{len(chosen) - len(survivors)}/{len(chosen)} hand-made mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

r"""Stage ``table``: ``python -m bnaf table NAME ...`` builds one table (Markdown + JSON twin)."""

from bnaf.dispatch import Dispatcher

__all__ = ["TABLES", "add_arguments", "run"]

#: product name -> one-line description; the module is ``bnaf.tables.<name>``.
TABLES: dict[str, str] = {
    "toy": "toy log-likelihoods and KL divergences (Sections 5.1-5.2)",
    "table1": "Table 1: test log-likelihood on UCI and BSDS300, parameter ratios",
    "table2": "Table 2: VAE -ELBO and NLL with amortised B-NAF posteriors",
}

_dispatch = Dispatcher("bnaf.tables", TABLES)
add_arguments = _dispatch.add_arguments
run = _dispatch.run

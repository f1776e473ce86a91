r"""Variational auto-encoders with amortised B-NAF posteriors (Section 5.4, Table 2).

``params`` and ``runs``, ``model`` (gated-convolution VAE around
:class:`bnaf.flows.AmortisedBNAF`), ``evaluate`` (-ELBO and importance-sampled NLL), ``train``
(``vae train``), ``count`` (``vae count``), ``table`` (``vae table``), published numbers and
differences.
"""

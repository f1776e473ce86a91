r"""Variational auto-encoders with amortised B-NAF posteriors (Section 5.4, Table 2).

``amortised`` (the flow), ``model`` (gated-convolution VAE), ``evaluate`` (-ELBO and
importance-sampled NLL), ``train`` (stage ``vae``), ``count`` (stage ``count-vae``),
``params`` (the ``vae:`` params section).
"""

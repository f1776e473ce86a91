r"""Density estimation on UCI and BSDS300 (Section 5.3, Table 1): params, runs, trainer,
training (``uci train``), selection (``uci select``), Table 1 (``uci table``), parameter
counts (``uci count``), published numbers and differences."""

r"""The toy experiments (Sections 5.1-5.2, Figures 2-3): params, runs, energies, training
(``toy train``), evaluation, table (``toy table``), figures (``toy figure``), differences."""

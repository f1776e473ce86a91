r"""The generated report and its checks: normalisation of trained flows (``normalisation``),
samples (``samples``), the report itself (``report``), its parts and provenance."""

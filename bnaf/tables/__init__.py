"""Tables of the pipeline; one module per product."""

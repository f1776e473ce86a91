r"""Shared infrastructure of every family: strict params loading (``config``), atomic I/O
(``io``), errors, runtime and environment (``runtime``), optimisers and schedules (``optim``),
statistics (``stats``) and the GPU-slot wrapper (``gpu``). Imports nothing else of bnaf."""

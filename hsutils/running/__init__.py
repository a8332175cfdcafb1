"""実行: Running: notebook runtime, parameters, the batch, the `hsutils` command, the gallery.

Modules: `params`, `notebook`, `notebook_check`, `batch`, `cli`, `gallery`. Layer 9 of 9 (docs/architecture.md); imports only from `core`, `inputs`, `rules`, `stats`, `analysis`, `publish`, `patterns`, `demo` and itself.
"""

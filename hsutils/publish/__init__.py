"""公表: Publishing: suppression, charts, written outputs and interactive panels.

Modules: `privacy`, `plots`, `report`, `widgets`. Layer 6 of 9 (docs/architecture.md); imports only from `core`, `inputs`, `rules`, `stats`, `analysis` and itself.
"""

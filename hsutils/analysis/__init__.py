"""集計と比較: Analysis: strata, indicators, 法定報告 items, the shared pass and its cache, areas and references.

Modules: `aggregate`, `indicators`, `hotei_items`, `pipeline`, `areas`, `references`, `cluster`. Layer 5 of 9 (docs/architecture.md); imports only from `core`, `inputs`, `rules`, `stats` and itself.
"""

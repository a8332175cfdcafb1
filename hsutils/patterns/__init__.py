"""支援パターン: Support patterns: the computations behind each notebook (01–09) and the 法定報告.

Modules: `overview`, `districts`, `ikkatsu`, `nephropathy`, `evaluation`, `costs`, `medication`, `nonparticipants`, `support_record`, `hotei`. Layer 7 of 9 (docs/architecture.md); imports only from `core`, `inputs`, `rules`, `stats`, `analysis`, `publish` and itself.
"""

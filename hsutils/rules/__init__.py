"""公式ルール: Official person-level rules: 健診 judgements and program target extraction.

Modules: `clinical`, `programs`. Layer 3 of 9 (docs/architecture.md); imports only from `core`, `inputs` and itself.
"""

"""デモデータ: The synthetic demo prefecture and its files in the real import formats.

Modules: `synth`, `synth_xml`, `synth_uke`. Layer 8 of 9 (docs/architecture.md); imports only from `core`, `inputs`, `rules`, `stats`, `analysis`, `publish`, `patterns` and itself.
"""

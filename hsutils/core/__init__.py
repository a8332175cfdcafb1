"""定義と設定: Definitions and plumbing every layer uses: errors, paths, atomic files, the input schema, coded vocabularies, municipality codes.

Modules: `errors`, `settings`, `files`, `schema`, `vocab`, `codes`. Layer 1 of 9 (docs/architecture.md); imports only from the standard library and third-party packages.
"""

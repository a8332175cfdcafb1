"""ヘルスサポート分析ワークブック: the library behind the notebooks.

Modules: schema, io, clinical, programs, aggregate, indicators, stats, regions, plots,
privacy, report, pipeline, batch, cli, synth (docs/design.md §2).
"""
__version__ = "0.1.0"

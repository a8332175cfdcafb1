"""データの読み込み: Data in: reading and validating the input files (CSV/xlsx/Parquet, 特定健診 XML, レセプト UKE) into the canonical tables, with the exclusions report.

Modules: `io`, `lookback`, `person_keys`, `tokutei_xml`, `uke`, `claims_masters`, `claims_rules`, `claims_import`, `regions`. Layer 2 of 9 (docs/architecture.md); imports only from `core` and itself.
"""

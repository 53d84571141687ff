"""Metadata ETL: crawled items -> unified metadata Parquet -> DuckDB catalog."""

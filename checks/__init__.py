"""Pandera schemas and Dagster asset checks, one module per asset family."""

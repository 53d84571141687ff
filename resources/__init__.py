"""Dagster resources: thin adapters to the systems the assets talk to."""

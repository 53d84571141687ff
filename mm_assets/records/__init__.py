"""The `records` group: the experiment table over every experiment partition (assets.py), its rows (table.py)
and how each experiment's latest attempt ended, read from the Dagster instance (outcome.py)."""

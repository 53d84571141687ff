"""Slurm as a Dagster Pipes client (client.py) and the parsing of what its commands print (state.py)."""

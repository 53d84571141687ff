"""Synthetic media sites (media.py) and a loopback server (server.py): the crawl's tests, the demo (run.py) and
the benchmarks run offline on them."""

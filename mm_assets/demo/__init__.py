"""Synthetic media sites and a loopback server: the crawl's tests, demo and benchmark run offline on them."""

from mm_assets.demo.media import (
    Site,
    SitePage,
    build_bad_site,
    build_bench_site,
    build_demo_site,
    make_clip,
    write_manifest,
)
from mm_assets.demo.server import LoopbackServer, Trickle, serve

__all__ = [
    "LoopbackServer",
    "Site",
    "SitePage",
    "Trickle",
    "build_bad_site",
    "build_bench_site",
    "build_demo_site",
    "make_clip",
    "serve",
    "write_manifest",
]

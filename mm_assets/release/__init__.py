"""The `release` group: release bundles (reference §B.7), one partition per configs/releases/<version>.yaml.

- config.py         the release policy (pipeline.yaml `release:`) and release files, validated
- lineage.py        what a release is made of, read from what the upstream assets recorded
- training_data.py  the training items' sources, licenses, hours and dates, from the catalog
- cards.py          the model card and the data card, generated
- bundle.py         the bundle's parts; manifest.py its manifest.json (written last)
- inference.py      the sample inference script every bundle ships (standalone: imports nothing of ours)
- checklist.py      the checklist items as rules (checks/release.py runs them as blocking checks)
- report.py         `mm release checklist`; verify.py   `mm release verify`
- assets.py         the release_bundle asset
"""

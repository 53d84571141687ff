"""Tokenizers for every modality: discrete codes plus the identity (weights sha256, versions, config) that made them.

A pure library (no Dagster): the `*_tokens` assets are thin wrappers around it. Import the submodule you need
(`mm_assets.tokens.audio`, `.text`, `.config`, `.identity`); nothing here imports torch eagerly, so loading the
pipeline config never pays for it.
"""

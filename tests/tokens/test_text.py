"""Text tokenizer: tokenizer.json loading with its sha256, byte-level round trips, the deterministic demo BPE."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mm_assets.storage.paths import sha256_file
from mm_assets.tokens.config import TextTokenizerConfig
from mm_assets.tokens.text import (
    MissingTokenizerError,
    TextTokenizer,
    TextTokenizerError,
    build_demo_bpe,
    train_demo_bpe,
)

SUBTITLES = [
    f"{i}: the quick brown fox jumps over the lazy dog, again and again ({i % 7})." for i in range(200)
] + ["你好，世界。字幕第二行。", "Ünïcödé façade — naïve café", "", "  spaces\tand\nnewlines  "]
SAMPLE = "The quick brown fox 🦊 says 你好 to the café\n\tand leaves."


@pytest.fixture(scope="module")
def demo_json(tmp_path_factory) -> Path:
    return train_demo_bpe(SUBTITLES, 512, tmp_path_factory.mktemp("tok") / "tokenizer.json")


def test_roundtrip_ids_and_identity(demo_json):
    tok = TextTokenizer.from_file(demo_json)
    ids = tok.encode(SAMPLE)
    assert ids.dtype == np.int32 and ids.ndim == 1 and len(ids) > 0
    assert ids.min() >= 0 and ids.max() < tok.vocab_size <= 512
    assert tok.decode(ids) == SAMPLE  # byte-level: any text round-trips, even unseen characters
    assert len(tok.encode("the quick brown fox")) < len("the quick brown fox")  # merges were learned
    assert [list(a) for a in tok.encode_batch([SAMPLE, "fox"])] == [list(ids), list(tok.encode("fox"))]
    assert tok.encode("").shape == (0,)
    meta = tok.identity.to_metadata()
    assert meta["modality"] == "text" and meta["weights"] == "pretrained"
    assert meta["weights_sha256"] == sha256_file(demo_json) and meta["weights_path"] == str(demo_json)
    assert meta["config"]["vocab_size"] == tok.vocab_size and meta["versions"]["tokenizers"]
    assert "trained_demo" not in meta["config"]


def test_demo_bpe_is_deterministic_across_runs_and_processes(demo_json, tmp_path):
    again = train_demo_bpe(SUBTITLES, 512, tmp_path / "again.json")
    assert again.read_bytes() == demo_json.read_bytes()
    code = (
        "import sys; from tests.tokens.test_text import SUBTITLES; from mm_assets.tokens.text import train_demo_bpe;"
        "train_demo_bpe(SUBTITLES, 512, sys.argv[1])"
    )
    other = tmp_path / "other-process.json"
    subprocess.run([sys.executable, "-c", code, str(other)], check=True, cwd=Path(__file__).resolve().parents[2])
    assert other.read_bytes() == demo_json.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.json", "other-process.json"]  # no temp files
    assert train_demo_bpe(SUBTITLES[:50], 512, tmp_path / "less.json").read_bytes() != demo_json.read_bytes()


def test_missing_tokenizer_names_the_path_and_the_way_out(tmp_path):
    cfg = TextTokenizerConfig(tokenizer_json="models/tokenizer.json")
    with pytest.raises(MissingTokenizerError) as err:
        TextTokenizer.from_config(cfg, base_dir=tmp_path, demo_texts=SUBTITLES)  # texts alone are not permission
    assert str(tmp_path / "models" / "tokenizer.json") in str(err.value) and "allow_train_demo" in str(err.value)
    demo = TextTokenizerConfig(tokenizer_json="models/tokenizer.json", allow_train_demo=True, demo_vocab_size=400)
    with pytest.raises(MissingTokenizerError, match="pass the crawled texts"):
        TextTokenizer.from_config(demo, base_dir=tmp_path)
    tok = TextTokenizer.from_config(demo, base_dir=tmp_path, demo_texts=SUBTITLES)
    assert (tmp_path / "models" / "tokenizer.json").is_file()
    assert tok.trained_demo and tok.vocab_size <= 400
    # once saved, the file is simply loaded, with the same identity: the same file makes the same ids
    loaded = TextTokenizer.from_config(demo, base_dir=tmp_path)
    assert not loaded.trained_demo and loaded.identity.to_metadata() == tok.identity.to_metadata()


def test_invalid_files_and_vocab_sizes(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(TextTokenizerError, match=f"{bad} is not a valid tokenizer.json"):
        TextTokenizer.from_file(bad)
    with pytest.raises(ValueError, match="at least 256"):
        build_demo_bpe(SUBTITLES, 100)

"""Text → token ids with a HuggingFace `tokenizers` tokenizer.json, plus a small byte-level BPE for the demo.

The tokenizer file is the text tokenizer's "weights": its sha256 goes into the identity. Ids come out without
the tokenizer's own special tokens (BOS/EOS templates): documents are delimited by the shard assembler's EOD.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mm_assets.storage.paths import atomic_write_text, sha256_file
from mm_assets.tokens.config import TextTokenizerConfig
from mm_assets.tokens.identity import TokenizerIdentity, library_versions


class TextTokenizerError(RuntimeError):
    """The tokenizer file is missing or unusable; the message names the path and what to do."""


class MissingTokenizerError(TextTokenizerError):
    def __init__(self, path: Path | None, may_train_demo: bool):
        self.path = path
        where = f"{path} does not exist" if path is not None else "no tokenizers.text.tokenizer_json is configured"
        how = (
            "put a tokenizer.json there, or (demo only) pass the crawled texts so a demo BPE is trained and saved there"
            if may_train_demo
            else "put a tokenizer.json there (or point tokenizers.text.tokenizer_json at one); for the demo only, "
            "set tokenizers.text.allow_train_demo: true to train a small byte-level BPE on the crawled texts"
        )
        super().__init__(f"text tokenizer: {where}; {how}")


def check_text_range(vocab_size: int, reserved: int, source: str | None) -> None:
    """The tokenizer's ids must fit the text range every shard's vocabulary layout reserves."""
    if vocab_size > reserved:
        raise TextTokenizerError(
            f"text tokenizer {source}: its {vocab_size} ids do not fit the text range of the vocabulary layout "
            f"(tokenizers.text.reserved_vocab_size: {reserved}). Set reserved_vocab_size to at least {vocab_size} "
            "(one value for every batch: blends refuse shards with different layouts), then rematerialize "
            "token_shards of every batch"
        )


class TextTokenizer:
    """A loaded tokenizer.json and its identity (file sha256, `tokenizers` version, vocabulary size).

    `trained_demo` says that this call trained and saved the demo BPE. It is not part of the identity: the
    same file makes the same ids whether it was trained a minute ago or loaded, so the identity must not differ.
    """

    def __init__(self, tokenizer: Tokenizer, identity: TokenizerIdentity, *, trained_demo: bool = False):
        self.tokenizer = tokenizer
        self.identity = identity
        self.trained_demo = trained_demo

    @classmethod
    def from_file(cls, path: str | Path) -> TextTokenizer:
        path = Path(path)
        if not path.is_file():
            raise MissingTokenizerError(path, may_train_demo=False)
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # noqa: BLE001 - tokenizers raises a plain Exception for any parse failure
            raise TextTokenizerError(f"text tokenizer: {path} is not a valid tokenizer.json ({err})") from None
        model = type(tokenizer.model).__name__
        identity = TokenizerIdentity(
            name=f"tokenizers-{model.lower()}",
            modality="text",
            weights="pretrained",
            weights_sha256=sha256_file(path),
            weights_path=str(path),
            versions=library_versions("tokenizers"),
            config={
                "model": model,
                "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
                "add_special_tokens": False,
            },
        )
        return cls(tokenizer, identity)

    @classmethod
    def from_config(
        cls,
        config: TextTokenizerConfig,
        *,
        base_dir: Path | None = None,
        demo_texts: Iterable[str] | None = None,
    ) -> TextTokenizer:
        """Load `config.tokenizer_json`. When it is missing and `allow_train_demo` is set, a demo BPE is trained
        on `demo_texts` and saved there first (the result's `trained_demo` is set); otherwise a missing file is an
        error."""
        path = None
        if config.tokenizer_json:
            path = Path(config.tokenizer_json)
            if base_dir is not None and not path.is_absolute():
                path = Path(base_dir) / path
        if path is not None and path.exists():
            return cls.from_file(path)
        if path is None or not config.allow_train_demo or demo_texts is None:
            raise MissingTokenizerError(path, config.allow_train_demo)
        train_demo_bpe(demo_texts, config.demo_vocab_size, path)
        loaded = cls.from_file(path)
        return cls(loaded.tokenizer, loaded.identity, trained_demo=True)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text`, int32, without special tokens."""
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def build_demo_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE (GPT-2 style: every byte is a token, so any text round-trips) trained on `texts`."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet):
        raise ValueError(f"vocab_size {vocab_size}: a byte-level BPE needs at least {len(alphabet)} (one per byte)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=alphabet,
        special_tokens=[],
        show_progress=False,
    )
    tokenizer.train_from_iterator((t for t in texts if t), trainer=trainer)
    return tokenizer


def train_demo_bpe(texts: Iterable[str], vocab_size: int, out_path: str | Path) -> Path:
    """Train `build_demo_bpe` and save it atomically as a tokenizer.json; same texts, same bytes."""
    out_path = Path(out_path)
    tokenizer = build_demo_bpe(texts, vocab_size)
    atomic_write_text(out_path, tokenizer.to_str(pretty=True))
    return out_path

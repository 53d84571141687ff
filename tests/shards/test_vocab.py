"""The unified vocab layout: packing, lookups, manifest round trip, and clear refusals."""

import json

import pytest

from mm_assets.shards.vocab import (
    DEFAULT_SPECIAL_TOKENS,
    Codebook,
    ModalityRange,
    TokenRange,
    VocabLayout,
    VocabLayoutError,
)


@pytest.fixture
def layout():
    return VocabLayout.build(32000, [Codebook("audio", 1024, 8), Codebook("image", 8192), Codebook("video", 4096, 2)])


def test_text_first_then_each_level_then_specials(layout):
    assert layout.text == TokenRange(0, 32000)
    audio = layout.modality("audio")
    assert audio.range == TokenRange(32000, 32000 + 8 * 1024)
    assert [audio.level(q).start for q in range(8)] == [32000 + 1024 * q for q in range(8)]
    assert layout.level_offset("audio", 7) == 32000 + 7 * 1024
    assert layout.modality("image").range == TokenRange(40192, 48384)
    assert layout.modality("video").level(1) == TokenRange(48384 + 4096, 48384 + 8192)
    top = 48384 + 8192
    assert [layout.token_id(t) for t in DEFAULT_SPECIAL_TOKENS] == list(range(top, top + len(DEFAULT_SPECIAL_TOKENS)))
    assert layout.vocab_size == top + len(DEFAULT_SPECIAL_TOKENS)
    assert layout.eod_id == layout.token_id("<eod>") and layout.pad_id == layout.token_id("<pad>")
    assert 32000 + 1023 in audio.level(0) and 32000 + 1024 not in audio.level(0)


def test_manifest_round_trip_is_versioned_and_stable(layout, tmp_path):
    manifest = json.loads(layout.to_json())
    assert manifest["format"] == "mm-pretrain.vocab-layout" and manifest["version"] == 1
    audio = {"name": "audio", "codebook_size": 1024, "levels": 8, "start": 32000, "stop": 40192}
    assert manifest["modalities"][0] == audio
    sha = layout.write(tmp_path / "vocab.json")
    again = VocabLayout.read(tmp_path / "vocab.json")
    assert again == layout and again.sha256 == sha == layout.sha256
    assert (tmp_path / "vocab.json").read_text() == layout.to_json()


def test_manifest_offsets_are_trusted_not_rederived(layout):
    manifest = layout.to_manifest()
    manifest["modalities"][1].update(start=60000, stop=68192)  # image moved up, leaving a gap
    manifest["vocab_size"] = 70000
    moved = VocabLayout.from_manifest(manifest)
    assert moved.modality("image").range == TokenRange(60000, 68192)
    assert moved.sha256 != layout.sha256


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(version=2), "version"),
        (lambda m: m.update(format="other"), "format"),
        (lambda m: m.pop("special_tokens"), "special_tokens: missing"),
        (lambda m: m["modalities"][0].pop("levels"), r"modalities\[0\]\.levels: missing"),
        (lambda m: m["modalities"][0].update(levels="8"), r"modalities\[0\]\.levels: expected int"),
        (lambda m: m["modalities"][1].update(start=39000, stop=47192), "overlapping vocab ranges: audio"),
        (lambda m: m["modalities"][0].update(stop=40000), "stop: 40000 != start"),
        (lambda m: m["modalities"][0].update(start=31000, stop=39192), "overlapping vocab ranges: text"),
        (lambda m: m["special_tokens"].update({"<pad>": 31999}), "overlapping vocab ranges: text"),
        (lambda m: m["special_tokens"].update({"<pad>": m["special_tokens"]["<eod>"]}), "share ids"),
        (lambda m: m["special_tokens"].pop("<eod>"), "end-of-document"),
        (lambda m: m.update(vocab_size=100), "vocab_size 100"),
        (lambda m: m["text"].update(start=5), "text.start"),
        (lambda m: m["modalities"][1].update(name="audio"), "duplicated"),
        (lambda m: m["modalities"][1].update(name="text"), "reserved"),
    ],
)
def test_invalid_manifests_are_refused_with_the_key(layout, edit, message):
    manifest = layout.to_manifest()
    edit(manifest)
    with pytest.raises(VocabLayoutError, match=message):
        VocabLayout.from_manifest(manifest)


def test_invalid_builds_are_refused():
    with pytest.raises(VocabLayoutError, match="positive"):
        VocabLayout.build(100, [Codebook("audio", 0, 8)])
    with pytest.raises(VocabLayoutError, match="must be integers"):
        VocabLayout.build(100, [Codebook("audio", 1024.0, 8)])
    with pytest.raises(VocabLayoutError, match="listed twice"):
        VocabLayout.build(100, [], ["<eod>", "<eod>"])
    with pytest.raises(VocabLayoutError, match="text_size"):
        VocabLayout.build(0, [])
    with pytest.raises(VocabLayoutError, match="overlapping"):
        VocabLayout(100, (ModalityRange(Codebook("audio", 10, 2), 100), ModalityRange(Codebook("image", 10), 115)),
                    {"<eod>": 200}, 201)
    with pytest.raises(VocabLayoutError, match="not valid JSON"):
        VocabLayout.from_json("{")


def test_lookups_name_what_exists(layout):
    with pytest.raises(KeyError, match="'speech' not in the vocab layout"):
        layout.modality("speech")
    with pytest.raises(KeyError, match="'<sep>'"):
        layout.token_id("<sep>")
    with pytest.raises(IndexError, match="level 8"):
        layout.modality("audio").level(8)

"""The document assembler: interleaving order, RVQ flattening, markers, EOD, and refusals."""

import numpy as np
import pytest

from mm_assets.shards.documents import AssemblyConfig, DocumentAssembler, DocumentError, flatten_codes
from mm_assets.shards.vocab import Codebook, VocabLayout


@pytest.fixture
def layout():
    return VocabLayout.build(100, [Codebook("audio", 10, 3), Codebook("image", 50)])


def ids(layout, *tokens):
    return [layout.token_id(t) for t in tokens]


def test_frame_major_flattening_offsets_each_level(layout):
    codes = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]])  # (levels=3, T=4)
    audio = layout.modality("audio")  # levels at 100, 110, 120
    assert flatten_codes(codes, audio).tolist() == [101, 115, 129, 102, 116, 120, 103, 117, 121, 104, 118, 122]
    level_major = [101, 102, 103, 104, 115, 116, 117, 118, 129, 120, 121, 122]
    assert flatten_codes(codes, audio, "level_major").tolist() == level_major


def test_text_then_audio_in_markers_then_eod(layout):
    doc = DocumentAssembler(layout)({"audio": [[1], [2], [3]], "text": [7, 8]})
    assert doc.dtype == np.int32
    assert doc.tolist() == [7, 8, *ids(layout, "<aud>"), 101, 112, 123, *ids(layout, "</aud>", "<eod>")]


def test_order_is_configurable_and_segments_interleave(layout):
    assembler = DocumentAssembler(layout, AssemblyConfig(order=("image", "text")))
    img, end_img = ids(layout, "<img>", "</img>")
    assert assembler({"text": [5], "image": [49]}).tolist() == [img, 179, end_img, 5, layout.eod_id]
    segments = [("text", [1]), ("audio", np.zeros((3, 1), int)), ("text", [2]), ("audio", np.ones((3, 1), int))]
    doc = assembler(segments).tolist()
    aud, end = ids(layout, "<aud>", "</aud>")
    assert doc == [1, aud, 100, 110, 120, end, 2, aud, 101, 111, 121, end, layout.eod_id]


def test_empty_modalities_are_skipped_but_an_empty_item_is_refused(layout):
    assembler = DocumentAssembler(layout)
    assert assembler({"text": [3], "audio": np.zeros((3, 0), int)}).tolist() == [3, layout.eod_id]
    with pytest.raises(DocumentError, match="empty document"):
        assembler({"text": [], "audio": np.zeros((3, 0), int)})


@pytest.mark.parametrize(
    "item, message",
    [
        ({"text": [100]}, r"text: id 100 outside the text range \[0, 100\)"),
        ({"text": [-1]}, "text: id -1"),
        ({"text": [1.5]}, "integer"),
        ({"audio": [[1, 2], [3, 4]]}, r"audio: codes must have shape \(3, T\), got \(2, 2\)"),
        ({"audio": [[1], [2], [10]]}, r"audio: code 10 outside the codebook \[0, 10\)"),
        ({"image": [50]}, r"image: code 50 outside"),
        ({"speech": [1]}, "missing from the assembly order"),
    ],
)
def test_bad_items_are_refused_with_the_offending_value(layout, item, message):
    with pytest.raises(DocumentError, match=message):
        DocumentAssembler(layout)(item)


def test_configuration_errors_are_caught_early(layout):
    with pytest.raises(ValueError, match="flatten"):
        AssemblyConfig(flatten="zigzag")
    with pytest.raises(ValueError, match="no markers configured for modality 'audio'"):
        DocumentAssembler(layout, AssemblyConfig(markers={"image": ("<img>", "</img>")}))
    with pytest.raises(KeyError, match="<snd>"):
        DocumentAssembler(layout, AssemblyConfig(markers={"audio": ("<snd>", "</snd>"), "image": ("<img>", "</img>")}))
    with pytest.raises(DocumentError, match="not in the vocab layout"):
        DocumentAssembler(layout)([("video", [1])])

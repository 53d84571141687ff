"""Prompts as ids: the video placeholder becomes the configured video tokenizer's codes, offset into the shard
vocabulary layout, between the layout's <vid> and </vid> ids; the text around it goes through the text tokenizer.
Samples are read with their line numbers in errors."""

import json

import numpy as np
import pytest

from mm_assets.demo.media import make_clip
from mm_assets.eval.config import parse_task
from mm_assets.eval.datasets import EvalDataError, read_samples
from mm_assets.eval.prompts import Segment, display_prompt, prompt_ids, render_segments
from mm_assets.eval.sets import render_samples
from mm_assets.shards.documents import AssemblyConfig, DocumentAssembler
from mm_assets.shards.vocab import Codebook, VocabLayout
from mm_assets.tokens.config import VideoTokenizerConfig
from mm_assets.tokens.text import TextTokenizer, train_demo_bpe
from mm_assets.tokens.video import VideoTokenizer
from resources.storage import StorageResource

TEMPLATE = "Frames:\n<vid>{video_placeholder}</vid>\nQuestion: {question}\nAnswer:"
VIDEO = VideoTokenizerConfig(input_resolution=(32, 32), fps=8.0, sampling_rate=2, tubelet_size=(2, 16, 16),
                             codebook_size=16, num_quantizers=2, embed_dim=8, checkpoint=None, device="cpu")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> TextTokenizer:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_demo_bpe(["Frames: Question: Which test pattern is shown? Answer: testsrc"] * 20, 300, path)
    return TextTokenizer.from_file(path)


@pytest.fixture(scope="module")
def layout() -> VocabLayout:
    return VocabLayout.build(512, [Codebook("audio", 8, 2), Codebook("video", VIDEO.codebook_size, VIDEO.num_quantizers)])


def test_segments_split_at_the_video_slot():
    segments = render_segments(TEMPLATE, {"question": "What {is} shown?"})
    assert segments == [Segment("text", "Frames:\n"), Segment("video"),
                        Segment("text", "\nQuestion: What {is} shown?\nAnswer:")]  # field values are not templates
    assert display_prompt(segments, 12) == "Frames:\n<vid>[12 video codes]</vid>\nQuestion: What {is} shown?\nAnswer:"
    assert render_segments("{text}", {"text": "only text"}) == [Segment("text", "only text")]


def test_video_placeholder_expands_to_offset_codes_inside_the_markers(tmp_path, tokenizer, layout):
    clip = make_clip(tmp_path / "clips" / "a.mp4", seconds=1.0, size="64x48", fps=8, audio=False)
    video = VideoTokenizer.from_config(VIDEO, allow_random_weights=True)
    codes = video.encode_file(clip).codes  # (levels, T) raw codes from the configured tokenizer
    assert codes.shape == (2, 2 * 2 * 2)  # 8 frames / 2 -> 4 sampled -> 2 tubelets x 2x2 grid, 2 levels

    task = parse_task({"task_name": "vqa", "eval_class": "VideoQuestionAnswering", "prompt_template": TEMPLATE,
                       "dataset_config": {"path": str(tmp_path / "qa.jsonl"), "video_root": str(tmp_path / "clips")},
                       "metric_config": [{"name": "ExactMatch"}]})
    (tmp_path / "qa.jsonl").write_text(json.dumps({"id": "s1", "video": "a.mp4", "question": "Which test pattern "
                                                  "is shown?", "answers": ["testsrc"]}) + "\n")
    _, _, samples = read_samples(task, StorageResource(root=str(tmp_path / "root")))
    (row,) = render_samples(task, samples, tokenizer.encode, DocumentAssembler(layout, AssemblyConfig()),
                            lambda path: video.encode_file(path).codes)

    video_range = layout.modality("video")
    expected_codes = (codes.astype(np.int64) + video_range.level_offsets[:, None]).T.reshape(-1)  # frame-major
    expected = np.concatenate([tokenizer.encode("Frames:\n"), [layout.token_id("<vid>")], expected_codes,
                               [layout.token_id("</vid>")], tokenizer.encode("\nQuestion: Which test pattern is "
                                                                             "shown?\nAnswer:")])
    assert row["prompt_ids"].tolist() == expected.tolist()
    assert expected_codes[:2].tolist() == [video_range.offset + codes[0, 0], video_range.offset + 16 + codes[1, 0]]
    assert all(i in video_range.range for i in expected_codes) and layout.eod_id not in row["prompt_ids"]
    assert row["video_tokens"] == codes.size and row["references"] == ["testsrc"]
    assert "<vid>[16 video codes]</vid>" in row["prompt"]


def test_prompt_without_video_codes_is_refused(tokenizer, layout):
    segments = render_segments(TEMPLATE, {"question": "q"})
    with pytest.raises(ValueError, match="no video codes"):
        prompt_ids(segments, tokenizer.encode, DocumentAssembler(layout))


def test_dataset_errors_name_file_line_and_field(tmp_path):
    qa = parse_task({"task_name": "qa", "eval_class": "TextQuestionAnswering", "prompt_template": "Q: {question}",
                     "dataset_config": {"path": "eval_datasets/qa.jsonl"}, "metric_config": [{"name": "ExactMatch"}]})
    storage = StorageResource(root=str(tmp_path))
    data = tmp_path / "eval_datasets" / "qa.jsonl"  # a relative dataset path is a key in storage
    data.parent.mkdir(parents=True)
    cases = [
        ('{"id": "a", "question": "q?", "answers": ["x"]}\n{"id": "b", "question": "q?"}\n',
         "qa.jsonl line 2 (b): answers: give a non-empty string or a list of them, got None"),
        ('{"id": "a", "question": "q?", "answers": ["x"]}\n{"id": "a", "question": "r?", "answers": "y"}\n',
         "line 2: id 'a' repeats line 1"),
        ('{"question": "q?", "answers": ["x"]}\n', "line 1: every sample needs a non-empty string `id`"),
        ('{"id": "a", "question": 3, "answers": ["x"]}\n', "line 1 (a): prompt_template uses {question}"),
        ('{"id": "a", "question": "q",\n', "line 1: not valid JSON"),
    ]
    for text, expected in cases:
        data.write_text(text)
        with pytest.raises(EvalDataError) as err:
            read_samples(qa, storage)
        assert expected in str(err.value), str(err.value)
    data.write_text('{"id": "a", "question": "q?", "answers": "x"}\n')
    assert read_samples(qa, storage)[2][0].references == ("x",)


def test_videos_stay_under_their_root(tmp_path):
    task = parse_task({"task_name": "vqa", "eval_class": "VideoQuestionAnswering", "prompt_template": TEMPLATE,
                       "dataset_config": {"path": str(tmp_path / "qa.json"), "video_root": "videos"},
                       "metric_config": [{"name": "BLEU"}]})
    (tmp_path / "qa.json").write_text(json.dumps([{"id": "a", "video": "../../etc/passwd", "question": "q",
                                                   "answers": ["x"]}]))
    with pytest.raises(EvalDataError, match="leaves dataset_config.video_root"):
        read_samples(task, StorageResource(root=str(tmp_path / "root")))
    for path, expected in [("s3://b/qa.json", "is not under the storage root"),
                           ("../qa.json", "is not a key"), ("missing.jsonl", "missing.jsonl does not exist")]:
        moved = task.model_copy(update={"dataset_config": task.dataset_config.model_copy(update={"path": path})})
        with pytest.raises(EvalDataError, match=expected):
            read_samples(moved, StorageResource(root=str(tmp_path / "root")))

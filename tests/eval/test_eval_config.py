"""Eval task files and the `eval:` section: the reference's shape, strict types, errors with their key path."""

from pathlib import Path

import pytest
import yaml

from mm_assets.config.base import DEFAULT_CONFIG, ConfigError
from mm_assets.config.pipeline import load_config, parse_config
from mm_assets.eval.config import VIDEO_CLOSE, VIDEO_OPEN, load_task, load_tasks, parse_task
from mm_assets.shards.documents import DEFAULT_MARKERS

REPO = Path(__file__).resolve().parents[2]
QA = {
    "task_name": "Video_MSRVTT_QA",
    "eval_class": "VideoQuestionAnswering",
    "dataset_config": {"path": "s3://eval-datasets/msrvtt/qa_test.json", "video_root": "s3://eval-datasets/msrvtt/videos/"},
    "metric_config": [{"name": "ExactMatch"}, {"name": "BLEU"}],
    "prompt_template": "<|im_start|>user\nThe following are frames from a video. Answer the question based on the "
                       "video content.\n<vid>{video_placeholder}</vid>\nQuestion: {question}\n<|im_end|>\n"
                       "<|im_start|>assistant\nAnswer:\n",
}


def error(data: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_task(data, source="task.yaml")
    return str(err.value)


def test_the_reference_task_file_is_valid():
    task = parse_task(QA)
    assert task.uses_video and task.metrics == ["ExactMatch", "BLEU"] and task.kind.generates


def test_shipped_tasks_load():
    cfg = load_config(DEFAULT_CONFIG)
    tasks = load_tasks(cfg.resolve(cfg.eval.tasks_dir), cfg.eval.tasks)
    assert {t.eval_class for t in tasks} == {"TextQuestionAnswering", "VideoQuestionAnswering", "Captioning",
                                              "TextPerplexity"}


def test_markers_are_the_shard_assemblers():
    assert (VIDEO_OPEN, VIDEO_CLOSE) == DEFAULT_MARKERS["video"]


@pytest.mark.parametrize("change, expected", [
    ({"eval_clas": "X"}, "eval_clas: Extra inputs are not permitted"),
    ({"eval_class": "VideoQA"}, "eval_class: Input should be 'TextQuestionAnswering', 'Captioning', "
                                "'VideoQuestionAnswering' or 'TextPerplexity' (got 'VideoQA')"),
    ({"metric_config": [{"name": "ExactMatch"}, {"name": "ROUGE"}]}, "metric_config.1.name: Input should be"),
    ({"metric_config": [{"name": "BLEU", "smooth": "exp"}]}, "metric_config.0.smooth: Extra inputs are not permitted"),
    ({"metric_config": [{"name": "Perplexity"}]}, "Perplexity is not computed by VideoQuestionAnswering"),
    ({"metric_config": []}, "metric_config: List should have at least 1 item"),
    ({"dataset_config": {"path": "data.jsonl", "video_rot": "v/"}}, "dataset_config.video_rot: Extra inputs"),
    ({"dataset_config": {"path": "data.jsonl"}}, "dataset_config.video_root: the template has a video placeholder"),
    ({"dataset_config": {"path": "http://host/qa.json", "video_root": "v"}}, "dataset_config.path: "),
    ({"task_name": 7}, "task_name: Input should be a valid string (got 7); YAML read this value as the number 7"),
    ({"task_name": "../etc"}, "task_name: task_name '../etc' must match"),
    ({"prompt_template": "Question: {question}\nAnswer:"}, "needs <vid>{video_placeholder}</vid> exactly once"),
    ({"prompt_template": "{video_placeholder} Question: {question}"}, "prompt_template: the video goes inside the "
                                                                      "vocabulary layout's markers, once"),
    ({"prompt_template": "<vid>{video_placeholder}</vid> {question!r}"}, "no format spec or conversion"),
    ({"prompt_template": "<vid>{video_placeholder}</vid> {question"}, "prompt_template"),
])
def test_bad_task_files_name_their_key(change, expected):
    message = error({**QA, **change})
    assert message.startswith("task.yaml: invalid eval task") and expected in message, message


def test_class_rules():
    text_qa = {**QA, "eval_class": "TextQuestionAnswering", "dataset_config": {"path": "qa.jsonl"}}
    assert "TextQuestionAnswering has no video" in error(text_qa)
    assert "needs {question} in it" in error({**text_qa, "prompt_template": "Answer:"})
    ppl = {"task_name": "ppl", "eval_class": "TextPerplexity", "dataset_config": {"path": "t.jsonl"},
           "metric_config": [{"name": "BLEU"}], "prompt_template": "{text}"}
    assert "BLEU is not computed by TextPerplexity (use ['Perplexity'])" in error(ppl)
    assert parse_task({**ppl, "metric_config": [{"name": "Perplexity"}]}).kind.references is None
    captions = {**QA, "eval_class": "Captioning", "prompt_template": "Describe it.", "dataset_config": {"path": "c"}}
    assert not parse_task(captions).uses_video  # captioning may go without a video


def test_task_files_and_the_pipeline_section(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(QA))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(QA))
    (tmp_path / "bad.yaml").write_text("task_name: [unclosed\n")
    assert load_task(tmp_path / "a.yaml").task_name == "Video_MSRVTT_QA"
    with pytest.raises(ConfigError, match="a and b both have task_name 'Video_MSRVTT_QA'"):
        load_tasks(tmp_path, ["a", "b"])
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_task(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="missing.yaml does not exist"):
        load_task(tmp_path / "missing.yaml")
    for data, expected in [
        ({"eval": {"canary": {"sead": 1}}}, "eval.canary.sead: Extra inputs are not permitted"),
        ({"eval": {"leakage": {"margin_min": 1.5}}}, "eval.leakage.margin_min: Input should be less than or equal to 1"),
        ({"eval": {"decontamination": {"ngram": "13"}}}, "eval.decontamination.ngram: Input should be a valid integer"),
        ({"eval": {"tasks": ["a", "a"]}}, "eval.tasks: tasks repeat"),
        ({"eval": {"device": "tpu"}}, "eval.device: Input should be 'auto', 'cpu' or 'cuda'"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_config(data, source="pipeline.yaml")
        assert expected in str(err.value), str(err.value)

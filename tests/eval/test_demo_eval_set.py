"""The demo's eval sets say what the demo site really holds, and the shipped demo tasks read them."""

import shutil

from mm_assets.config.base import DEFAULT_CONFIG
from mm_assets.config.pipeline import load_config
from mm_assets.demo.eval_set import write_demo_eval_sets
from mm_assets.demo.media import DEMO_CLIPS
from mm_assets.etl.subtitles import vtt_text
from mm_assets.eval.config import load_tasks
from mm_assets.eval.datasets import read_samples
from resources.storage import StorageResource


def test_demo_sets_match_the_site_and_load_as_the_shipped_tasks(tmp_path, demo_site):
    storage = StorageResource(root=str(tmp_path))
    write_demo_eval_sets(storage)
    shutil.copytree(demo_site.root, storage.store.local_dir(storage.layout.demo_site()))  # where `mm demo` builds it
    cfg = load_config(DEFAULT_CONFIG)
    samples = {t.task_name: read_samples(t, storage)[2] for t in load_tasks(cfg.resolve(cfg.eval.tasks_dir), cfg.eval.tasks)}
    assert {k: len(v) for k, v in samples.items()} == {"demo_clip_qa": 6, "demo_video_qa": 3, "demo_captions": 3,
                                                       "demo_text_ppl": 3}
    for clip, caption, text in zip(DEMO_CLIPS, samples["demo_captions"], samples["demo_text_ppl"]):
        subtitles = " ".join(vtt_text((demo_site.root / f"subs/clip-{clip.number}.en.vtt").read_text()).split("\n"))
        assert caption.references == (subtitles,) and text.fields["text"] == subtitles
        assert caption.video is not None and caption.video.is_file()
    qa = {s.id: (s.fields["question"], s.references) for s in samples["demo_clip_qa"]}
    assert qa["clip-3-tone"] == ("Which clip plays a 880 Hz tone?", ("clip 3",))
    assert {s.references for s in samples["demo_video_qa"]} == {(c.pattern,) for c in DEMO_CLIPS}

"""The Grafana dashboard JSON: a panel per metric of the table, templated by experiment, structurally valid."""

import json
import re

from mm_assets.config.base import PROJECT_ROOT
from mm_assets.monitor import metrics as mt
from mm_assets.monitor.deploy import DASHBOARD

BOARD = json.loads((PROJECT_ROOT / "deploy" / DASHBOARD).read_text())


def _panels():
    return [p for p in BOARD["panels"] if p["type"] != "row"]


def test_one_panel_per_metric():
    shown = [re.findall(r"llm_pretrain_[a-z_]+", p["targets"][0]["expr"]) for p in _panels()]
    assert all(len(names) == 1 for names in shown)
    assert sorted(n for (n,) in shown) == sorted(m.name for m in mt.METRICS)


def test_templated_by_experiment():
    variables = {v["name"]: v for v in BOARD["templating"]["list"]}
    assert variables["experiment"]["query"]["query"] == "label_values(llm_pretrain_training_iteration, experiment)"
    assert variables["experiment"]["multi"] and variables["datasource"]["query"] == "prometheus"
    for panel in _panels():
        expr = panel["targets"][0]["expr"]
        if not panel["title"].startswith("data_pipeline"):
            assert 'experiment=~"$experiment"' in expr, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}" and panel["fieldConfig"]["defaults"]["unit"]


def test_layout_is_valid_grafana():
    assert BOARD["uid"] and BOARD["schemaVersion"] >= 36 and BOARD["title"]
    ids = [p["id"] for p in BOARD["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in BOARD["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"panel {panel['id']} overlaps another"
        cells |= area
        for target in panel.get("targets", []):
            assert target["refId"] and target["expr"].count("(") == target["expr"].count(")")
    assert [p["title"] for p in BOARD["panels"] if p["type"] == "row"] == ["Training", "Hardware", "Data pipeline"]

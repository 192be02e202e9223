"""`tailor report DIR`: one self-contained page for a study, a search or a run, with every entry,
its plots and recipes, no link or request out; and it renders in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_sentences, recipe_dict
from tailorkit import api
from tailorkit.config.study import StudyConfig
from tailorkit.recipe import recipe_from_dict
from tailorkit.report.html import build_report
from tailorkit.report.plots import pareto_front
from tailorkit.study.run import run_study

NAMES = ["full", "head", "broken", "lora"]


@pytest.fixture(scope="module")
def study_dir(tiny_model_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    make_sentences(120).to_csv(tmp / "s.csv", index=False)
    base = recipe_dict(tiny_model_dir, tmp / "s.csv", tmp / "unused", epochs=1)
    variants = [{"name": "full"}, {"name": "head", "set": ["methods=[{freeze: {top: 0}}]"]},
                {"name": "broken", "set": ["data.train=/no/such/file.csv"]},
                {"name": "lora", "set": ["methods=[{lora: {r: 2}}]", "train.lr=1e-2"]}]
    cfg = StudyConfig.model_validate({"base": base, "variants": variants, "isolate": False,
                                      "output_dir": str(tmp / "study")})
    return run_study(cfg, log=lambda line: None)


def images(page: str) -> list[str]:
    return re.findall(r"<img class='plot' alt='([^']*)' src='data:image/png;base64,", page)


def test_study_report_holds_every_variant_its_plots_and_no_url(study_dir):
    page = build_report(study_dir).read_text()
    for name in NAMES:
        assert f"<h3>{name}</h3>" in page  # its recipe (or, for the failed one, its error)
        assert f"<td>{name}</td>" in page  # its row of the table
    assert "failed: " in page and "file.csv" in page
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)=['"](?!data:)""", page)  # every resource inline
    alts = images(page)
    for cost in ("trainable parameters", "train time", "peak memory", "latency"):
        assert any(cost in alt for alt in alts)
    assert "learning curves" in alts and "confusion matrix" in alts
    assert "methods:\n- lora:" in page  # each variant's recipe as it ran


def test_report_of_a_single_run_and_of_a_search(study_dir, tiny_model_dir, tmp_path):
    page = build_report(study_dir / "runs" / "head", tmp_path / "run.html").read_text()
    assert "run report: head" in page and "confusion matrix" in images(page)

    make_sentences(80).to_csv(tmp_path / "s.csv", index=False)
    raw = recipe_dict(tiny_model_dir, tmp_path / "s.csv", tmp_path / "search", max_steps=3)
    raw["search"] = {"metric": "loss", "sampler": "random", "n_trials": 2,
                     "space": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}}
    search_dir = api.tune(recipe_from_dict(raw))
    page = build_report(search_dir).read_text()
    assert "search report" in page and page.count("<h3>") == 2
    assert "http://" not in page and "https://" not in page


def test_pareto_front_keeps_only_points_nothing_beats():
    costs, scores = [1.0, 2.0, 3.0, 4.0, 2.5], [0.5, 0.8, 0.7, 0.9, 0.8]
    front = pareto_front(list(zip(costs, scores, strict=True)), higher_is_better=True)
    assert front == [0, 1, 3]  # 3.0/0.7 and 2.5/0.8 are beaten by 2.0/0.8
    assert pareto_front([(1.0, 0.3), (2.0, 0.1)], higher_is_better=False) == [0, 1]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
         "document.title='loaded:'+i.length+':'+i.filter(x=>x.complete&&x.naturalWidth>0).length;});</script>")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install Debian's `chromium` "
                                             "(scripts/setup.sh does, as root with apt)")
def test_report_renders_in_headless_chromium(study_dir, tmp_path):
    """Chromium loads the page offline and decodes every plot; its screenshot is not blank."""
    page = build_report(study_dir).read_text()
    probe = tmp_path / "probe.html"  # a copy that writes what the browser saw into its title
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    shown = re.search(r"<title>loaded:(\d+):(\d+)</title>", dom)
    assert shown, "the page's load event never fired"
    assert int(shown[1]) == len(images(page)) >= 6 and shown[1] == shown[2]  # every plot decoded

    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}",
                    (study_dir / "report.html").as_uri()], capture_output=True, timeout=120, check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1200)
    assert pixels.std() > 10  # text, table and plots, not a blank page
    assert json.loads((study_dir / "status.json").read_text())["broken"]["status"] == "failed"
    assert yaml.safe_load((study_dir / "plan.yaml").read_text())["variants"][0]["name"] == "full"


def test_report_of_a_compress_output_folder_shows_each_steps_own_numbers(finished_run, tmp_path):
    """Each step's row is that step's test metric, size and latency, never the last step's (a
    step's recipe.yaml has a compress: section too, but the step is its own final run)."""
    from tailorkit.config.compress import CompressConfig

    out = tmp_path / "compressed"
    api.compress(finished_run, CompressConfig(steps=[{"prune": {"amount": 0.5}}, "quantize"],
                                              output_dir=str(out), latency_batches=[1], latency_examples=4))
    pruned, quantized = out / "1-prune", out / "2-quantize"
    summary = json.loads((pruned / "summary.json").read_text())
    summary["test"]["accuracy"] = 0.125  # the two steps' metrics differ for certain
    (pruned / "summary.json").write_text(json.dumps(summary))
    (quantized / "latency.json").write_text(json.dumps({"batch_1_ms": 999.0, "examples": 4, "threads": 1}))
    own = {d.name: json.loads((d / "summary.json").read_text()) for d in (pruned, quantized)}
    assert own["1-prune"]["weights_mb"] > own["2-quantize"]["weights_mb"]

    page = build_report(out).read_text()
    table = re.search(r"<table id='results'>(.*?)</table>", page).group(1)
    rows = {cells[0]: cells for cells in (re.findall(r"<td[^>]*>([^<]*)</td>", r)
                                          for r in re.findall(r"<tr>(.*?)</tr>", table)) if cells}
    assert set(rows) == {"1-prune", "2-quantize"}
    for name, summary in own.items():  # variant, runs, metric, trainable, s, samples/s, peak, size, latency
        assert rows[name][2] == f"{summary['test']['accuracy']:.4f}"
        assert rows[name][7] == f"{summary['weights_mb']:.2f}"
    assert rows["2-quantize"][8] == "999.00"
    step_1_ms = json.loads((pruned / "latency.json").read_text())["batch_1_ms"]  # timed for itself
    assert rows["1-prune"][8] == f"{step_1_ms:.2f}" != "999.00"

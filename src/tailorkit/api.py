"""The Python API: every `tailor` command is a thin call into these functions.

    from tailorkit import api
    run_dir = api.train(api.load_recipe("recipe.yaml"))
    api.predict(run_dir, ["Shares fell after the profit warning."])

They live where their job is: running a recipe (tailorkit.pipeline), using a finished run
(tailorkit.inference), searching (tailorkit.search.tune) and the process set-up
(tailorkit.runtime), comparing strategies (tailorkit.study) and the HTML report (tailorkit.report).
This module only gathers them.
"""

from tailorkit.inference import (
    compress_run as compress,
)
from tailorkit.inference import (
    evaluate,
    load_generator,
    load_run,
    merge,
    predict,
    predict_images,
    predict_with,
    run_recipe,
)
from tailorkit.pipeline import resume, train
from tailorkit.pipeline.run_dir import LABELS, SUMMARY
from tailorkit.recipe import load_recipe, recipe_from_dict
from tailorkit.report.html import build_report as report
from tailorkit.search.tune import tune, tune_status
from tailorkit.study.plan import load_study
from tailorkit.study.run import run_study

__all__ = ["LABELS", "SUMMARY", "compress", "evaluate", "load_generator", "load_recipe", "load_run", "merge",
           "predict", "predict_images", "predict_with", "recipe_from_dict", "resume", "run_recipe", "train",
           "tune", "tune_status", "load_study", "run_study", "report"]

"""Reading a finished run back: a run folder may come from someone else, so its recipe alone
cannot turn on running the code in its model folder (issue #15, "Trust")."""

from __future__ import annotations

import pytest

from conftest import recipe_dict, trusting_copy
from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict


def test_a_run_that_trusts_remote_code_loads_only_when_the_caller_allows_it(finished_run, tmp_path):
    run = trusting_copy(finished_run, tmp_path / "received")
    with pytest.raises(TailorError) as info:
        api.load_run(run)
    assert str(info.value) == (f"{run}: its recipe turns on model.trust_remote_code, which runs code from "
                               "the model folder; pass --trust-remote-code to allow it")
    recipe, handle, labels, _ = api.load_run(run, trust_remote_code=True)
    assert recipe.model.trust_remote_code and labels == ["neg", "pos"]
    assert api.load_run(finished_run)[2] == labels  # a run that does not ask needs nothing


@pytest.mark.parametrize("student_trusts", [False, True])
def test_a_distillation_teacher_is_trusted_as_far_as_the_recipe_trusts(student_trusts, tiny_model_dir,
                                                                      finished_run, sentiment_csv, tmp_path):
    teacher = trusting_copy(finished_run, tmp_path / "teacher")
    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "student", max_steps=2)
    raw["model"]["trust_remote_code"] = student_trusts
    raw["methods"] = [{"distill": {"teacher": str(teacher)}}]
    if not student_trusts:
        with pytest.raises(TailorError, match="its recipe turns on model.trust_remote_code"):
            api.train(recipe_from_dict(raw))
    else:
        assert (api.train(recipe_from_dict(raw)) / "summary.json").is_file()


def test_a_run_recorded_before_train_precision_reads_without_the_authors_warning(finished_run, tmp_path):
    """Runs written before `train.bf16` became `train.precision` hold `bf16:` in recipe.yaml;
    tailorkit wrote that file, so reading it must not tell the user to edit it."""
    import shutil
    import warnings

    import yaml

    old = tmp_path / "old-run"
    shutil.copytree(finished_run, old)
    recipe = yaml.safe_load((old / "recipe.yaml").read_text())
    recipe["train"].pop("precision", None)
    recipe["train"]["bf16"] = False
    (old / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert api.run_recipe(old).train.precision == "fp32"
        assert api.load_run(old)[2] == ["neg", "pos"]

"""The method contract on the vision model: every method that claims images runs this.

MobileNetV2 from random weights (no download) on 32x32 digits. Per case: exactly the
intended parameters train; a few steps on a fixed batch lower the loss and leave the
frozen tensors bit-identical; saving and loading gives identical outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from tailorkit.inference import load_run
from tailorkit.methods import METHODS, model_owner
from tailorkit.pipeline import setup_run
from tailorkit.pipeline.run_dir import save_model_atomically
from tailorkit.recipe import dump_recipe, recipe_from_dict
from tailorkit.train.loop import Trainer


def head(n: str) -> bool:
    return n.startswith("classifier.")


def fake_quant_state(n: str) -> bool:
    """QAT's observers learn the int8 ranges as the model trains: state, not parameters."""
    return "activation_post_process" in n or "weight_fake_quant" in n


@dataclass(frozen=True)
class Case:
    methods: list
    trains: Callable[[str], bool]
    buffers: Callable[[str], bool] = lambda n: False  # state that training may change besides them


CASES = {
    "full": Case(["full"], lambda n: True),
    "freeze": Case([{"freeze": {"top": 1}}], lambda n: head(n) or n.startswith("features.18.")),
    "layerwise_lr": Case([{"layerwise_lr": {"decay": 0.5}}], lambda n: True),
    "gradual_unfreeze": Case(["gradual_unfreeze"], head),
    "gradual_prune": Case([{"gradual_prune": {"target": 0.3}}], lambda n: True),  # conv weights too
    "lora": Case([{"lora": {"r": 2}}], lambda n: "lora_" in n or "modules_to_save" in n),
    # batches are cached 1280-d features; the frozen MobileNetV2 sits under backbone.*
    "features": Case([{"features": {"head_epochs": 1}}], lambda n: n.startswith("head.")),
    # fused conv-bn-relu with fake quantisers; saved and loaded as real int8
    "qat": Case(["qat"], lambda n: True, fake_quant_state),
    # TEACHER: a finished image run of the same recipe (the module's teacher fixture)
    "distill": Case([{"distill": {"teacher": "TEACHER"}}], lambda n: True),
}
IMAGE_METHODS = sorted(name for name, cls in METHODS.items() if "image" in cls.modalities)


def test_every_image_method_has_a_case():
    assert sorted(CASES) == IMAGE_METHODS


def _recipe(out, methods) -> dict:
    return {"task": "image_classification", "model": {"name": "mobilenet-v2", "pretrained": False},
            "data": {"name": "digits", "max_train_samples": 64, "max_eval_samples": 32,
                     "image": {"size": 32, "augment": "none", "hflip": False}},
            "methods": methods,
            "train": {"batch_size": 16, "lr": 1e-2, "schedule": "constant", "progress": False,
                      "threads": 1},
            "output_dir": str(out)}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from tailorkit import api

    out = tmp_path_factory.mktemp("vision-teacher") / "run"
    raw = _recipe(out, ["full"])
    return api.train(recipe_from_dict({**raw, "train": {**raw["train"], "max_steps": 2}}))


def _with_teacher(methods: list, teacher) -> list:
    return [{n: {**c, "teacher": str(teacher)}} if n == "distill" else m
            for m in methods for n, c in ([(m, {})] if isinstance(m, str) else m.items())]


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_vision_method_contract(name, tmp_path, request):
    case = CASES[name]
    # a teacher run is trained only for the cases that name one
    needs_teacher = any("distill" in m for m in case.methods if isinstance(m, dict))
    methods = case.methods
    if needs_teacher:
        methods = _with_teacher(methods, request.getfixturevalue("teacher"))
    recipe = recipe_from_dict(_recipe(tmp_path / "run", methods))
    s = setup_run(recipe, tmp_path)
    trainer = Trainer(s.handle, s.methods, s.splits["train"], s.splits["validation"], recipe.train,
                      s.loss_fn, s.labels, tmp_path, recipe.seed)
    handle, model = s.handle, s.handle.model
    expected = {n for n, _ in model.named_parameters() if case.trains(n)}
    assert expected and set(handle.trainable_names()) == expected

    model.eval()  # batch-norm statistics fixed, so before/after compare
    group = [list(range(16))]
    batch = trainer.train_data.collate(group[0])

    def loss_now() -> float:
        with torch.no_grad():
            return float(trainer.loss_fn(handle.forward(batch), batch["labels"]))

    before = {n: t.detach().clone() for n, t in model.state_dict().items()}
    start = loss_now()
    trainable = [p for p in model.parameters() if p.requires_grad]
    for _ in range(6):
        trainer._step(group, trainable)
    assert loss_now() < start - 1e-3
    changed = {n for n, t in model.state_dict().items() if not torch.equal(before[n], t)}
    changed = {n for n in changed if not case.buffers(n)}
    assert changed and changed <= expected, sorted(changed - expected)[:5]

    # Save and load as a run does (whole model, adapter folder or feature head; qat converts to
    # int8 when training ends).
    for method in s.methods:
        method.on_fit_end(s, 0.0)
    run_dir = tmp_path / "saved"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe))
    save_model_atomically(handle, model_owner(s.methods), s.labels, run_dir / "model")
    _, fresh, _, _ = load_run(run_dir)
    fresh.model.eval()
    with torch.no_grad():
        assert torch.equal(handle.forward(batch), fresh.forward(batch))

"""One contract over every registered adaptation method.

Each method registers itself in `tailorkit.methods.METHODS`; this file keeps a table of
(method -> example configs -> which parameter names must train). A method that is
registered without an entry here fails `test_every_registered_method_has_a_case`
(and its own parametrised case), so a new method cannot skip the contract.

For every case on the tiny 2-block BERT:
  - exactly the intended parameters have requires_grad;
  - a few optimiser steps change only those: the frozen rest stays bit-identical;
  - the same steps lower the loss on a tiny fixed batch;
  - saving (the model folder, or the adapter folder) and loading back gives
    bit-identical outputs;
  - merging gives the unmerged outputs within MERGE_TOLERANCE where the table says the
    method merges, and a clear TailorError where it does not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tailorkit.errors import TailorError
from tailorkit.inference import load_run
from tailorkit.methods import METHODS, model_owner
from tailorkit.pipeline.run_dir import save_model_atomically
from tailorkit.recipe import dump_recipe, recipe_from_dict

STEPS = 6
MERGE_TOLERANCE = 1e-5  # merged vs unmerged logits: float32 reassociation only


# Parameter-name predicates for the tiny BERT (bert.embeddings.*, bert.encoder.layer.{0,1}.*,
# bert.pooler.*, classifier.*).
def head(n: str) -> bool:
    return n.startswith(("classifier.", "bert.pooler."))


def block(i: int) -> Callable[[str], bool]:
    return lambda n: n.startswith(f"bert.encoder.layer.{i}.")


def embeddings(n: str) -> bool:
    return n.startswith("bert.embeddings.")


def bias(n: str) -> bool:
    return n.endswith(".bias")


def norm(n: str) -> bool:
    return "LayerNorm" in n


def everything(n: str) -> bool:
    return True


# Adapter methods: PEFT wraps the model (base_model.model.*) and trains a copy of the head.
def peft_head(n: str) -> bool:
    return ".modules_to_save." in n


def lora(n: str) -> bool:
    return ".lora_" in n or peft_head(n)


def virtual_tokens(n: str) -> bool:
    return n.startswith("prompt_encoder.") or peft_head(n)


# Feature extraction: the frozen backbone sits under backbone.*, the new head under head.*. Its
# batches are cached features, so the steps below train the head on them; the raw-input path
# and the scikit-learn heads (no parameters to step) are checked in tests/methods/test_features.py.
def feature_head(n: str) -> bool:
    return n.startswith("head.")


@dataclass(frozen=True)
class Case:
    id: str
    methods: list  # as written in a recipe
    trains: Callable[[str], bool]  # which parameter names must be trainable
    merges: bool = False  # the adapter method folds its weights into the base (LoRA, IA3)


CASES: dict[str, list[Case]] = {
    "full": [Case("full", ["full"], everything)],
    "freeze": [
        Case("top1", [{"freeze": {"top": 1}}], lambda n: head(n) or block(1)(n)),
        Case("head-only", [{"freeze": {"top": 0}}], head),
        Case("bitfit", [{"freeze": {"top": 0, "bias": True}}], lambda n: head(n) or bias(n)),
        Case("norm-only", [{"freeze": {"head": False, "norm": True}}], norm),
        Case("embeddings-only", [{"freeze": {"head": False, "embeddings": True}}], embeddings),
        Case("regex", [{"freeze": {"head": False, "include": [r"layer\.0\.output\.dense"]}}],
             lambda n: n.startswith("bert.encoder.layer.0.output.dense.")),
        Case("top2-exclude-attention", [{"freeze": {"top": 2, "exclude": ["attention"]}}],
             lambda n: (head(n) or block(0)(n) or block(1)(n)) and "attention" not in n),
    ],
    "layerwise_lr": [Case("decay0.5", [{"layerwise_lr": {"decay": 0.5}}], everything)],
    "gradual_unfreeze": [Case("epoch0", [{"gradual_unfreeze": {"every": 1}}], head)],
    # the mask acts in the loop's on_step hook; tests/methods/test_gradual_prune.py checks it
    "gradual_prune": [Case("alone", ["gradual_prune"], everything),
                      Case("top1", [{"freeze": {"top": 1}}, {"gradual_prune": {"target": 0.3}}],
                           lambda n: head(n) or block(1)(n))],
    "lora": [
        Case("r4-all-linear", [{"lora": {"r": 4}}], lora, merges=True),
        Case("r2-query-value", [{"lora": {"r": 2, "targets": ["query", "value"]}}],
             lambda n: peft_head(n) or (".lora_" in n and (".query." in n or ".value." in n)),
             merges=True),
    ],
    "ia3": [Case("default", ["ia3"], lambda n: ".ia3_l." in n or peft_head(n), merges=True)],
    "prefix": [Case("4-tokens", [{"prefix": {"virtual_tokens": 4}}], virtual_tokens)],
    "prompt": [Case("4-tokens", [{"prompt": {"virtual_tokens": 4}}], virtual_tokens)],
    "features": [
        Case("linear", [{"features": {"head_lr": 1e-2}}], feature_head),
        Case("mlp-cls", [{"features": {"head": "mlp", "hidden": 8, "pooling": "cls", "head_lr": 1e-2}}],
             feature_head),
    ],
    # TEACHER: the session's finished tiny run (conftest.finished_run); the teacher's logits
    # ride in the batches, the student is the whole model
    "distill": [Case("soft", [{"distill": {"teacher": "TEACHER"}}], everything),
                Case("hard-top1", [{"freeze": {"top": 1}},
                                   {"distill": {"teacher": "TEACHER", "targets": "hard", "alpha": 0.7}}],
                     lambda n: head(n) or block(1)(n))],
    # linear layers fake-quantised as dynamic int8 rounds; saved and loaded as real int8
    "qat": [Case("all-linear", ["qat"], everything),
            Case("top1-head-fp32", [{"freeze": {"top": 1}}, {"qat": {"keep_fp32": ["classifier"]}}],
                 lambda n: head(n) or block(1)(n))],
    "bottleneck": [
        Case("houlsby", [{"bottleneck": {"placement": "houlsby", "size": 4}}],
             lambda n: ".adapter." in n or n.startswith("classifier.")),
        Case("pfeiffer", [{"bottleneck": {"placement": "pfeiffer", "size": 4}}],
             lambda n: (".adapter." in n and ".attention." not in n) or n.startswith("classifier.")),
    ],
}

# Methods compose in recipe order; each composition runs the same contract.
COMPOSITIONS = [
    Case("freeze-top1+layerwise_lr", [{"freeze": {"top": 1}}, {"layerwise_lr": {"decay": 0.5}}],
         lambda n: head(n) or block(1)(n)),
    Case("bitfit+layerwise_lr", [{"freeze": {"top": 0, "bias": True}}, "layerwise_lr"],
         lambda n: head(n) or bias(n)),
    Case("freeze-head-only+full", [{"freeze": {"top": 0}}, "full"], everything),
    # an earlier freeze choice survives the adapter: BitFit biases (+ pooler) train beside LoRA
    Case("lora+distill", [{"lora": {"r": 2}}, {"distill": {"teacher": "TEACHER"}}], lora, merges=True),
    Case("bitfit+lora", [{"freeze": {"bias": True}}, {"lora": {"r": 2}}],
         lambda n: lora(n) or ((n.endswith(".bias") or ".pooler." in n) and "original_module" not in n),
         merges=True),
]

MISSING = Case("missing", [], everything)
# Methods for text models run here; image methods in test_vision_methods.py.
TEXT_METHODS = sorted(name for name, cls in METHODS.items() if "text" in cls.modalities)


def _params() -> list:
    out = []
    for name in TEXT_METHODS:
        for case in CASES.get(name, [MISSING]):
            out.append(pytest.param(name, case, id=f"{name}:{case.id}"))
    out += [pytest.param("+".join(_names(c.methods)), c, id=f"compose:{c.id}") for c in COMPOSITIONS]
    return out


def _names(methods: list) -> list[str]:
    return [m if isinstance(m, str) else next(iter(m)) for m in methods]


def test_every_registered_method_has_a_case():
    missing = sorted(set(TEXT_METHODS) - set(CASES))
    assert not missing, f"registered methods without a contract case in CASES: {missing}"
    stale = sorted(set(CASES) - set(TEXT_METHODS))
    assert not stale, f"contract cases for methods that are not registered: {stale}"
    for name, cases in CASES.items():
        assert cases and all(name in _names(c.methods) for c in cases), name


@pytest.fixture
def contract_recipe(tiny_recipe) -> dict:
    """The default optimiser (AdamW, weight decay, clipping) at a constant, brisk LR."""
    return {**tiny_recipe, "train": {**tiny_recipe["train"], "lr": 1e-2, "schedule": "constant"}}


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def _reload(trainer, recipe: dict, run_dir: Path):
    """End training as the Fit stage does (qat converts to int8), save the model/ folder as a run
    does, then load the run back as `tailor predict` does: the same dispatch (whole model,
    adapter folder or feature head) the pipeline uses."""
    for method in trainer.methods:
        method.on_fit_end(SimpleNamespace(handle=trainer.handle, info=defaultdict(dict)), 0.0)
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe_from_dict(recipe)))
    save_model_atomically(trainer.handle, model_owner(trainer.methods), trainer.labels, run_dir / "model")
    _, loaded, _, _ = load_run(run_dir)
    return loaded


def _with_teacher(methods: list, teacher: Path) -> list:
    return [{n: {**c, "teacher": str(teacher)}} if n == "distill" else {n: c}
            for m in methods for n, c in ([(m, {})] if isinstance(m, str) else m.items())]


@pytest.mark.parametrize(("name", "case"), _params())
def test_method_contract(name, case, contract_recipe, make_trainer, finished_run, tmp_path):
    if case is MISSING:
        pytest.fail(f"method '{name}' is registered but has no entry in CASES (tests/contract)")
    recipe = {**contract_recipe, "methods": _with_teacher(case.methods, finished_run)}
    trainer = make_trainer(recipe)
    handle, model = trainer.handle, trainer.handle.model
    names = [n for n, _ in model.named_parameters()]

    # 1. Exactly the intended parameters train.
    expected = {n for n in names if case.trains(n)}
    assert expected, "the predicate selects nothing: the case is wrong"
    assert set(handle.trainable_names()) == expected

    # 2. A few steps on a fixed batch: the loss falls, frozen tensors stay bit-identical.
    model.eval()  # dropout off, so the before/after losses are comparable
    group = [list(range(16))]
    fixed = trainer.train_data.collate(group[0])

    def loss_now() -> float:
        with torch.no_grad():
            return float(trainer.loss_fn(handle.forward(fixed), fixed["labels"]))

    before_state, before_loss = _snapshot(model), loss_now()
    trainable = [p for p in model.parameters() if p.requires_grad]
    for _ in range(STEPS):
        trainer._step(group, trainable)
    after_state, after_loss = _snapshot(model), loss_now()
    assert after_loss < before_loss - 1e-3, (before_loss, after_loss)
    changed = {n for n in before_state if not torch.equal(before_state[n], after_state[n])}
    assert changed, "training changed nothing"
    assert changed <= expected, f"frozen tensors changed: {sorted(changed - expected)[:5]}"

    # 3. Save -> load gives identical outputs.
    loaded = _reload(trainer, recipe, tmp_path / "saved")
    loaded.model.eval()
    with torch.no_grad():
        trained = handle.forward(fixed)
        assert torch.equal(trained, loaded.forward(fixed))

    # 4. Merging: equal outputs within MERGE_TOLERANCE where it means something, else a clear error.
    last = model_owner(trainer.methods) or trainer.methods[-1]  # what `tailor merge` merges
    if not case.merges:
        with pytest.raises(TailorError):
            last.merge(handle)
        return
    last.merge(handle)
    assert not any(".lora_" in n or ".ia3_l." in n for n, _ in handle.model.named_parameters())
    with torch.no_grad():
        merged = handle.forward(fixed)
    torch.testing.assert_close(merged, trained, atol=MERGE_TOLERANCE, rtol=0)

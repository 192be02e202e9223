"""The hand-written bottleneck adapter against fixed reference numbers, as torchtune tests LoRA.

src/tailorkit/methods/bottleneck.py computes, on a sublayer's output h,
    out = h + up(act(down(h)))      down: d -> m, up: m -> d (both with bias)
and wraps the projection: AdaptedLinear(x) = adapter(base_layer(x)).

Weights and inputs are multiples of 1/8 (exact in float32). The expected numbers below were
computed once in float64 with numpy from that formula (`_numpy_*` in this file; GELU exact, via
erf), not from the module, and are written out as literals; `test_literals_are_the_numpy_formula`
keeps the two in step. Torch runs in float32, so outputs of size ~1 agree to ~1e-7: ATOL = 1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tailorkit.methods import apply_methods
from tailorkit.methods.bottleneck import AdaptedLinear, Bottleneck
from tailorkit.models.handle import ModelHandle

ATOL = 1e-6


def fill(shape: tuple[int, ...], offset: int) -> np.ndarray:
    """Deterministic values in {-5/8, ..., 5/8}: ((5 i + offset) mod 11 - 5) / 8."""
    n = math.prod(shape)
    return (((np.arange(n) * 5 + offset) % 11 - 5) / 8).reshape(shape)


def _set(module: nn.Module, values: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.copy_(torch.from_numpy(values[name]))


# -- the numpy reference ----------------------------------------------------------------------------

_erf = np.vectorize(math.erf)
ACT = {"relu": lambda z: np.maximum(z, 0.0), "gelu": lambda z: 0.5 * z * (1 + _erf(z / math.sqrt(2))),
       "tanh": np.tanh, "swish": lambda z: z / (1 + np.exp(-z))}


def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return x @ w.T + b


def _numpy_bottleneck(h: np.ndarray, p: dict[str, np.ndarray], act: str) -> np.ndarray:
    z = _linear(h, p["down.weight"], p["down.bias"])
    return h + _linear(ACT[act](z), p["up.weight"], p["up.bias"])


# -- 1. the adapter module alone: d = 4, m = 2 -------------------------------------------------------

ADAPTER = {"down.weight": fill((2, 4), 0), "down.bias": fill((2,), 1),
           "up.weight": fill((4, 2), 2), "up.bias": fill((4,), 3)}
# Rows give down(h) = (-,-), (-,-), (+,+), (-,+): relu both cuts and passes.
H = fill((4, 4), 4)

EXPECTED_BOTTLENECK = {
    "relu": [[-0.37500000, 0.87500000, -0.62500000, 0.62500000],
             [-0.62500000, 0.62500000, -0.87500000, 0.37500000],
             [-0.96289062, 0.23828125, 0.06445312, 0.29882812],
             [0.42968750, 0.21484375, 0.00000000, -0.21484375]],
    "gelu": [[-0.34110628, 0.94389716, -0.52109940, 0.53532272],
             [-0.59578421, 0.69088186, -0.77245208, 0.28860856],
             [-0.93106412, 0.28975279, 0.13556971, 0.23313326],
             [0.44654679, 0.27268342, 0.09882006, -0.29244744]],
    "tanh": [[-0.23913766, 1.11624358, -0.27837517, 0.31443145],
             [-0.51144562, 0.84821072, -0.54213295, 0.08521587],
             [-0.95979975, 0.24245943, 0.06971862, 0.29359685],
             [0.58640961, 0.44518481, 0.30396001, -0.50597681]],
    "swish": [[-0.32492735, 0.96813108, -0.48881049, 0.50463102],
              [-0.58272024, 0.71215280, -0.74297416, 0.26144203],
              [-0.92659888, 0.29597844, 0.14355576, 0.22531040],
              [0.44456544, 0.28374592, 0.12292640, -0.30833120]],
}


@pytest.mark.parametrize("act", sorted(ACT))
def test_bottleneck_matches_reference_values(act):
    adapter = Bottleneck(4, 2, act)
    _set(adapter, ADAPTER)
    with torch.no_grad():
        out = adapter(torch.from_numpy(H).float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), torch.tensor(EXPECTED_BOTTLENECK[act], dtype=torch.float64),
                               atol=ATOL, rtol=0)


@pytest.mark.parametrize("act", sorted(ACT))
def test_fresh_bottleneck_is_the_identity(act):
    """`up` starts at zero, so before training the adapter returns its input bit for bit."""
    torch.manual_seed(0)
    adapter = Bottleneck(4, 2, act)
    assert adapter.down.weight.abs().sum() > 0  # down is random; only up is zero
    h = torch.from_numpy(H).float()
    with torch.no_grad():
        assert torch.equal(adapter(h), h)


# -- 2. a projection with its adapter: base Linear(3 -> 4), then the adapter ------------------------

BASE = {"weight": fill((4, 3), 5), "bias": fill((4,), 6)}
X3 = fill((2, 3), 7)
EXPECTED_ADAPTED_GELU = [[-0.42248620, 0.11483640, -0.55096600, 1.12973180],
                         [-0.12830492, -0.23839359, -0.34848227, 0.68621505]]


def test_adapted_linear_applies_the_projection_then_the_adapter():
    base = nn.Linear(3, 4)
    _set(base, BASE)
    adapter = Bottleneck(4, 2, "gelu")
    _set(adapter, ADAPTER)
    with torch.no_grad():
        out = AdaptedLinear(base, adapter)(torch.from_numpy(X3).float())
    torch.testing.assert_close(out.double(), torch.tensor(EXPECTED_ADAPTED_GELU, dtype=torch.float64),
                               atol=ATOL, rtol=0)


# -- 3. through the method: placement in a toy two-block model ---------------------------------------
# Each block: a = x + attention.output.dense(x); y = a + output.dense(relu(intermediate.dense(a))),
# the BERT names the method looks for. Houlsby adapts both projections, Pfeiffer only the FFN one.

D, FFN = 4, 6
PLACES = {"attention.output.dense": (D, D), "intermediate.dense": (FFN, D), "output.dense": (D, FFN)}


def _base_params() -> dict[str, np.ndarray]:
    params, offset = {}, 8
    for i in range(2):
        for place, shape in PLACES.items():
            params[f"blocks.{i}.{place}.weight"] = fill(shape, offset)
            params[f"blocks.{i}.{place}.bias"] = fill(shape[:1], offset + 1)
            offset += 2
    params["head.weight"], params["head.bias"] = fill((2, D), offset), fill((2,), offset + 1)
    return params


def _adapter_params(block: int, place: str) -> dict[str, np.ndarray]:
    k = 30 + 4 * block + (2 if place == "output.dense" else 0)
    return {"down.weight": fill((2, D), k), "down.bias": fill((2,), k + 1),
            "up.weight": fill((D, 2), k + 2), "up.bias": fill((D,), k + 3)}


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention, self.intermediate, self.output = nn.Module(), nn.Module(), nn.Module()
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(D, D)
        self.intermediate.dense = nn.Linear(D, FFN)
        self.output.dense = nn.Linear(FFN, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x + self.attention.output.dense(x)
        return a + self.output.dense(torch.relu(self.intermediate.dense(a)))


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Block(), _Block()])
        self.head = nn.Linear(D, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def _numpy_toy(x: np.ndarray, adapted: tuple[str, ...], act: str) -> np.ndarray:
    p = _base_params()

    def proj(i: int, place: str, v: np.ndarray) -> np.ndarray:
        out = _linear(v, p[f"blocks.{i}.{place}.weight"], p[f"blocks.{i}.{place}.bias"])
        return _numpy_bottleneck(out, _adapter_params(i, place), act) if place in adapted else out

    for i in range(2):
        a = x + proj(i, "attention.output.dense", x)
        x = a + proj(i, "output.dense", np.maximum(proj(i, "intermediate.dense", a), 0.0))
    return _linear(x, p["head.weight"], p["head.bias"])


TOKENS = fill((2, 3, D), 50)  # (batch, sequence, hidden)
SPECS = {"houlsby": ({"placement": "houlsby", "reduction": 2, "activation": "tanh"},
                     ("attention.output.dense", "output.dense"), "tanh"),
         "pfeiffer": ({"placement": "pfeiffer", "reduction": 2}, ("output.dense",), "relu")}
EXPECTED_TOY = {
    "houlsby": [[[-0.68860475, -2.28933615], [-0.85822544, -2.15066214], [-1.29437697, -2.21422846]],
                [[-0.42649525, -1.50650832], [-0.17761841, -1.85097196], [-0.51419976, -1.83736573]]],
    "pfeiffer": [[[-0.65276904, -1.63048497], [-0.79460048, -1.76425792], [-1.14698671, -1.93846302]],
                 [[-0.52490845, -1.12324933], [-0.07480316, -0.93992982], [-0.40522348, -1.05814018]]],
}


@pytest.mark.parametrize("placement", sorted(SPECS))
def test_method_places_adapters_and_matches_reference_values(placement):
    config, adapted, _ = SPECS[placement]
    torch.manual_seed(0)
    model = _Toy()
    _set(model, _base_params())
    # the third field (what the model predicts) does not matter to the method: positional, so a
    # rename of it (task -> output) leaves this test alone
    handle = ModelHandle(model, None, "classes", blocks_prefix="blocks.", embeddings_prefix="embeddings.",
                         num_blocks=2, head_modules=["head"])
    tokens = torch.from_numpy(TOKENS).float()
    with torch.no_grad():
        before = model(tokens)
    apply_methods(handle, [{"bottleneck": config}])

    wrapped = sorted(n.removesuffix(".adapter") for n, m in model.named_modules()
                     if isinstance(m, Bottleneck))
    assert wrapped == sorted(f"blocks.{i}.{place}" for i in range(2) for place in adapted)
    assert all(model.get_submodule(f"{n}.adapter").down.out_features == 2 for n in wrapped)  # 4 / 2
    with torch.no_grad():
        assert torch.equal(model(tokens), before)  # zero-initialised `up`: the base model exactly
        for name in wrapped:
            i, place = int(name.split(".")[1]), name.split(".", 2)[2]
            _set(model.get_submodule(f"{name}.adapter"), _adapter_params(i, place))
        out = model(tokens)
    torch.testing.assert_close(out.double(), torch.tensor(EXPECTED_TOY[placement], dtype=torch.float64),
                               atol=ATOL, rtol=0)


# -- the literals are the formula --------------------------------------------------------------------

def test_literals_are_the_numpy_formula():
    """Guards the hard-coded numbers against typos: each is the float64 numpy formula, rounded to
    8 decimals when written down."""
    for act, expected in EXPECTED_BOTTLENECK.items():
        np.testing.assert_allclose(_numpy_bottleneck(H, ADAPTER, act), expected, atol=1e-8, rtol=0)
    base_out = _linear(X3, BASE["weight"], BASE["bias"])
    np.testing.assert_allclose(_numpy_bottleneck(base_out, ADAPTER, "gelu"), EXPECTED_ADAPTED_GELU,
                               atol=1e-8, rtol=0)
    for placement, (_, adapted, act) in SPECS.items():
        np.testing.assert_allclose(_numpy_toy(TOKENS, adapted, act), EXPECTED_TOY[placement],
                                   atol=1e-8, rtol=0)
    # the adapters change the toy's output: the placement test would notice a missing one
    assert np.abs(_numpy_toy(TOKENS, ("output.dense",), "tanh")
                  - _numpy_toy(TOKENS, ("attention.output.dense", "output.dense"), "tanh")).max() > 0.01
    assert np.abs(_numpy_toy(TOKENS, ("output.dense",), "relu") - _numpy_toy(TOKENS, (), "relu")).max() > 0.01

"""Step "layers" (_step_layers.pxi) against the reference twin, 1-4 threads."""
import pytest

from helpers import step_parity

OPTIMIZERS = [{}, {"momentum": 0.9, "nesterov": True}, {"optimizer": "adam", "learning_rate": 1e-3},
              {"clip_norm": 0.5}]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: "-".join(map(str, o.values())) or "sgd")
@pytest.mark.parametrize("act,out,loss", [("tanh", "softmax", "log_loss"),
                                          ("relu", "identity", "squared_error"),
                                          ("sigmoid", "sigmoid", "log_loss")])
def test_layers_step_matches_reference(dtype, opt, act, out, loss):
    step_parity("layers", [8, 40, 24, 3], 32, n=150, dtype=dtype, activation=act,
                output=out, loss=loss, fit=opt)

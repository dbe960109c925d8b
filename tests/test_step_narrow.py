"""Steps "narrow" and "narrow-epochs" (_step_narrow.pxi) against the reference twin."""
import pytest

from helpers import step_parity


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", [{}, {"momentum": 0.9}, {"optimizer": "adam", "learning_rate": 1e-3}],
                         ids=["sgd", "momentum", "adam"])
@pytest.mark.parametrize("act,out,loss", [("tanh", "softmax", "log_loss"),
                                          ("relu", "identity", "squared_error")])
def test_narrow_step_matches_reference(dtype, opt, act, out, loss):
    step_parity("narrow", [5, 12, 7, 3], 64, n=300, dtype=dtype, activation=act, output=out,
                loss=loss, fit=opt)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_narrow_epochs_step_matches_reference(dtype):
    step_parity("narrow-epochs", [2, 3, 1], None, n=4, dtype=dtype, activation="sigmoid",
                output="sigmoid", loss="squared_error", fit={"epochs": 200, "learning_rate": 1.0})

"""Step "first" (_step_first.pxi) against the reference twin, 1-2 threads."""
import pytest

from helpers import step_parity


@pytest.mark.parametrize("act,out,loss", [("tanh", "softmax", "log_loss"),
                                          ("relu", "identity", "squared_error")])
def test_first_step_matches_reference(act, out, loss):
    # the first layer's 128 x 512 x 256 product goes to BLAS; 300 = 2 x 128 + 44
    step_parity("first", [512, 256, 64, 8], 128, n=300, activation=act, output=out, loss=loss,
                threads=(1, 2), fit={"learning_rate": 0.02})

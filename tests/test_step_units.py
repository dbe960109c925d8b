"""Step "units" (_step_units.pxi) against the reference twin, 1-4 threads."""
import pytest

from helpers import step_parity


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("act,out,loss", [("tanh", "softmax", "log_loss"),
                                          ("relu", "sigmoid", "squared_error"),
                                          ("sigmoid", "identity", "squared_error")])
def test_units_step_matches_reference(act, out, loss, shuffle):
    # 300 = 9 x 32 + 12: the last batch's forward pass rides on the step before
    step_parity("units", [64, 128, 10], 32, n=300, activation=act, output=out, loss=loss,
                fit={"shuffle": shuffle})


def test_units_step_is_plain_sgd_only():
    import fastmlp
    with pytest.raises(ValueError, match="strategy 'units' cannot run this fit"):
        fastmlp.Network([64, 128, 10], dtype="float32").plan(300, 32, strategy="units",
                                                             optimizer="adam")

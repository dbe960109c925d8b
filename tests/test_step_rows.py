"""Step "rows" (_step_rows.pxi) against the reference twin, 1-4 threads."""
import pytest

from helpers import step_parity


@pytest.mark.parametrize("opt", [{}, {"momentum": 0.9}, {"optimizer": "adam", "learning_rate": 1e-3},
                                 {"learning_rate": 0.05, "clip_norm": 1.0}],
                         ids=["sgd", "momentum", "adam", "clip"])
@pytest.mark.parametrize("act,out,loss", [("tanh", "softmax", "log_loss"),
                                          ("relu", "identity", "squared_error")])
def test_rows_step_matches_reference(opt, act, out, loss):
    # 64-row batches of 64-128-64-10 split into row parts; 300 = 4 x 64 + 44
    step_parity("rows", [64, 128, 64, 10], 64, n=300, activation=act, output=out, loss=loss,
                fit=opt)


def test_rows_step_needs_float32():
    import fastmlp
    with pytest.raises(ValueError, match="strategy 'rows' cannot run this fit"):
        fastmlp.Network([64, 128, 64, 10], dtype="float64").plan(300, 64, strategy="rows")

"""Backprop against central differences, and the checker itself."""
import numpy as np
import pytest

import fastmlp
from fastmlp import reference

from helpers import COMBOS, make_targets, randomise_biases

SIZES = [[3, 2], [4, 5, 3], [3, 4, 5, 2], [2, 6, 1]]


@pytest.mark.parametrize("cls", [fastmlp.Network, reference.Network], ids=["compiled", "reference"])
@pytest.mark.parametrize("act,out,loss", COMBOS)
@pytest.mark.parametrize("sizes", SIZES, ids=str)
def test_gradients_agree_with_central_differences(sizes, act, out, loss, cls):
    rng = np.random.default_rng(len(sizes) * 31 + sizes[0])
    sizes = list(sizes)
    if out == "softmax":
        sizes[-1] = max(2, sizes[-1])
    net = cls(sizes, activation=act, output=out, loss=loss, l2=0.05, init="he", seed=2)
    # Random biases keep relu away from its kink at exactly zero.
    randomise_biases(net, rng)
    X = rng.normal(size=(5, sizes[0]))
    Y = make_targets(rng, 5, sizes[-1], out, loss)
    before = net.params.copy()
    result = fastmlp.check_gradients(net, X, Y)
    assert result.max_rel_error < 1e-6, result
    assert np.array_equal(net.params, before)
    assert np.abs(result.analytic).max() > 1e-3      # a real, non-zero gradient was compared


class _WrongBiasGradient(fastmlp.Network):
    """A network whose last bias gradient is off by 1%: the check must catch it."""

    def gradients(self, X, Y):
        grads = super().gradients(X, Y)
        grads[-1][1][...] *= 1.01
        return grads


def test_check_gradients_reports_a_wrong_gradient():
    rng = np.random.default_rng(0)
    net = _WrongBiasGradient([3, 4, 2], output="sigmoid", loss="log_loss", seed=0)
    X = rng.normal(size=(6, 3))
    Y = (rng.random((6, 2)) > 0.5).astype(float)
    result = fastmlp.check_gradients(net, X, Y)
    assert result.max_rel_error == pytest.approx(0.01 / 1.01, rel=1e-3)
    assert result.layer == 1 and result.kind == "b"
    assert float(result) == result.max_rel_error


def test_check_gradients_locates_weights():
    net = fastmlp.Network([2, 3, 2], output="softmax", loss="log_loss", seed=1)
    from fastmlp.gradcheck import _locate
    assert _locate(net.layer_sizes, 0) == (0, "W", (0, 0))
    assert _locate(net.layer_sizes, 5) == (0, "W", (1, 2))
    assert _locate(net.layer_sizes, 6) == (0, "b", (0,))
    assert _locate(net.layer_sizes, 9) == (1, "W", (0, 0))
    assert _locate(net.layer_sizes, net.n_params - 1) == (1, "b", (1,))


def test_check_gradients_rejects_bad_eps():
    net = fastmlp.Network([2, 1], seed=0)
    with pytest.raises(ValueError, match="eps"):
        fastmlp.check_gradients(net, np.zeros((1, 2)), np.zeros(1), eps=0)

"""Memory bounds (README "Guarantees", Memory): each case runs in a child
process that measures its peak resident memory (ru_maxrss) before and after
one call, on data and networks sized so that the old copies or workspaces
would show (issue 24)."""
import sys

import pytest

from helpers import run_child

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB")

PRELUDE = r"""
import resource
import numpy as np
import fastmlp

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def report(fn):
    before = peak_mb()
    fn()
    print("GROWTH", peak_mb() - before, flush=True)
"""


def growth_mb(body):
    code, out, err = run_child(PRELUDE + body, timeout=600)
    assert code == 0, err
    return float(next(line for line in out.splitlines() if line.startswith("GROWTH")).split()[1])


def test_validation_split_gathers_minibatches_instead_of_copying_X():
    # X is 98 MiB; the split used to copy its training rows (+88 MiB) and its
    # validation rows; now batches and validation chunks are gathered from X
    growth = growth_mb(r"""
rng = np.random.default_rng(0)
X = rng.standard_normal((200_000, 64))
y = (X[:, 0] > 0).astype(float)
net = fastmlp.Network([64, 8, 1], seed=0)
net.fit(X[:1000], y[:1000], epochs=1, batch_size=256, validation_split=0.1)
report(lambda: net.fit(X, y, epochs=1, batch_size=256, validation_split=0.1))
""")
    assert growth < 25, f"fit with validation_split grew the peak RSS by {growth:.0f} MiB"


@pytest.mark.parametrize("call", ["predict", "loss"])
def test_forward_passes_of_wide_layers_have_bounded_workspace(call):
    # 2048 rows of a 50000-unit layer: an 820 MB workspace before, <= 16 MB now
    growth = growth_mb(r"""
net = fastmlp.Network([10, 50000, 10], output="softmax", seed=0)
X = np.random.default_rng(0).standard_normal((2048, 10))
y = np.zeros(2048, dtype=int)
call = lambda rows: (net.predict(X[:rows]) if CALL == "predict" else net.loss(X[:rows], y[:rows]))
call(4)
report(lambda: call(2048))
""".replace("CALL", repr(call)))
    assert growth < 48, f"{call} grew the peak RSS by {growth:.0f} MiB"


def test_gradients_work_through_rows_in_bounded_workspace():
    # 20000 rows of [100, 2048, 10]: 660 MB of activations and deltas before
    growth = growth_mb(r"""
net = fastmlp.Network([100, 2048, 10], output="softmax", loss="log_loss", seed=0)
X = np.random.default_rng(0).standard_normal((20000, 100))
y = np.random.default_rng(1).integers(0, 10, 20000)
net.gradients(X[:4], y[:4])
report(lambda: net.gradients(X, y))
""")
    assert growth < 48, f"gradients grew the peak RSS by {growth:.0f} MiB"


def test_fit_allocates_losses_as_epochs_run_not_for_all_epochs_up_front():
    # epochs=10**9 used to allocate 7.45 GiB of losses before the first epoch
    growth = growth_mb(r"""
X, y = fastmlp.datasets.xor()
net = fastmlp.Network([2, 3, 1], seed=0)
net.fit(X, y, epochs=2)
stop_at_two = lambda net, epoch, logs: fastmlp.STOP if epoch >= 2 else None
report(lambda: net.fit(X, y, epochs=10**9, callbacks=[stop_at_two]))
assert len(net.history.loss) == 2
""")
    assert growth < 48, f"fit(epochs=10**9) grew the peak RSS by {growth:.0f} MiB"


SPARSE_DATA = r"""
import scipy.sparse as sp
rng = np.random.default_rng(0)
n, d, per = ROWS, 20000, 20                    # 0.1% density
X = sp.csr_matrix((rng.standard_normal(n * per).astype(np.float32),
                   np.sort(rng.integers(0, d, (n, per)), axis=1).ravel(),
                   np.arange(n + 1) * per), shape=(n, d))
y = rng.integers(0, 2, n)
net = fastmlp.Network([d, 16, 2], output="softmax", dtype="float32", seed=0)
net.strategy = STRATEGY
net.fit(X[:1000], y[:1000], epochs=1, batch_size=256)
"""


@pytest.mark.parametrize("rows,strategy", [(200_000, "auto"), (20_000, ("layers",))],
                         ids=["step-sparse", "densified-batches"])
def test_sparse_fit_and_predict_never_densify_the_data(rows, strategy):
    # 200000 x 20000 float32 is 15 GiB dense (1.5 GiB for 20000 rows); the CSR
    # X is 31 MiB (3.1): the fit densifies a batch at a time or none of it
    growth = growth_mb(SPARSE_DATA.replace("ROWS", str(rows)).replace("STRATEGY", repr(strategy))
                       + r"""
def fit_and_predict():
    net.fit(X, y, epochs=1, batch_size=256, optimizer="adam", learning_rate=1e-3)
    assert net.history.steps["sparse" if STRATEGY == "auto" else "layers"] == -(-n // 256)
    assert net.predict(X).shape == (n, 2)
report(fit_and_predict)
""".replace("STRATEGY", repr(strategy)))
    assert growth < 100, f"a sparse fit and predict grew the peak RSS by {growth:.0f} MiB"

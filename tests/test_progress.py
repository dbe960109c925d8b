"""fastmlp.progress: the per-epoch progress bar (tqdm or plain text)."""
import io
import time

import pytest

from fastmlp.progress import ProgressBar


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_plain_text_to_a_file_writes_throttled_lines():
    out = io.StringIO()
    bar = ProgressBar(1000, file=out, use_tqdm=False, log_interval=3600)
    for epoch in range(1, 1001):
        bar.update(epoch, loss=1.0 / epoch, rate=0.1)
    bar.close()
    lines = out.getvalue().splitlines()
    # the first update draws, then nothing for an hour, but the last epoch always draws
    assert len(lines) == 2 and bar.draws == 2
    assert lines[0].startswith("train epoch    1/1000")
    assert "epoch 1000/1000" in lines[-1] and "100%" in lines[-1]
    assert "loss 0.001" in lines[-1] and "lr 0.1" in lines[-1] and "epochs/s" in lines[-1]
    assert "\r" not in out.getvalue()


def test_plain_text_on_a_terminal_redraws_in_place():
    out = FakeTTY()
    with ProgressBar(50, file=out, use_tqdm=False, min_interval=0) as bar:
        for epoch in range(1, 51):
            bar.update(epoch, loss=0.5, rate=None, val_loss=0.25)
    text = out.getvalue()
    assert text.count("\r") >= 50 and text.endswith("\n")
    assert "val_loss 0.25" in text and "lr" not in text.split("\r")[-1]
    assert "#" * 20 in text.split("\r")[-1]


def test_update_is_cheap_between_draws():
    out = io.StringIO()
    bar = ProgressBar(10**6, file=out, use_tqdm=False, log_interval=3600)
    start = time.perf_counter()
    for epoch in range(1, 100_001):
        bar.update(epoch, 0.1, 0.01)
    per_call = (time.perf_counter() - start) / 100_000
    bar.close()
    assert bar.draws <= 2
    assert per_call < 20e-6        # a clock read and a comparison, not a redraw


def test_tqdm_backend():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    bar = ProgressBar(20, file=out, use_tqdm=True, min_interval=0)
    assert bar.use_tqdm
    for epoch in range(1, 21):
        bar.update(epoch, loss=0.123456, rate=0.05)
    bar.close()
    text = out.getvalue()
    assert "20/20" in text and "loss=0.123456" in text and "lr=0.05" in text
    assert bar._bar.n == 20


def test_tqdm_missing_falls_back(monkeypatch):
    import fastmlp.progress as progress
    monkeypatch.setattr(progress, "_have_tqdm", lambda: False)
    out = io.StringIO()
    bar = ProgressBar(3, file=out)
    assert not bar.use_tqdm
    bar.update(3, 0.5)
    bar.close()
    assert "epoch 3/3" in out.getvalue()
    with pytest.raises(ImportError, match="tqdm"):
        ProgressBar(3, use_tqdm=True)


def test_close_is_idempotent_and_handles_no_updates():
    out = io.StringIO()
    bar = ProgressBar(10, file=out, use_tqdm=False)
    bar.close()
    bar.close()
    assert out.getvalue() == ""


def test_non_finite_and_tiny_values_are_readable():
    out = io.StringIO()
    bar = ProgressBar(2, file=out, use_tqdm=False)
    bar.update(1, float("nan"), 1e-7)
    bar.update(2, 12345678.0, 0.5)
    bar.close()
    text = out.getvalue()
    assert "loss nan" in text and "lr 1.000e-07" in text and "loss 1.235e+07" in text


@pytest.mark.parametrize("bad", [-1, 2.5, "10", True])
def test_bad_total(bad):
    with pytest.raises(ValueError, match="total_epochs"):
        ProgressBar(bad)


def test_network_fit_verbose_uses_it(capsys):
    import fastmlp
    X, y = fastmlp.datasets.xor()
    net = fastmlp.Network([2, 3, 1], seed=0)
    try:
        net.fit(X, y, epochs=30, learning_rate=1.0, verbose=True)
    except TypeError:
        pytest.skip("Network.fit has no verbose yet")
    err = capsys.readouterr()
    text = err.err + err.out
    assert "30/30" in text and "loss" in text

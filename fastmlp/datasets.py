"""Small built-in data sets: no download, no optional dependency."""
import numpy as np


def xor():
    """The XOR truth table: X (4, 2), y (4,) of 0/1 floats."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    return X, np.array([0, 1, 1, 0], dtype=np.float64)


def or_gate():
    """The OR truth table: X (4, 2), y (4,) of 0/1 floats."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    return X, np.array([0, 1, 1, 1], dtype=np.float64)


def disk(n_samples=1000, radius=0.6, noise=0.0, seed=0):
    """Points in [-1, 1]^2, labelled 1 inside a disk of ``radius`` around 0.

    The nonlinear task of seed 004: no line separates the classes.

    Parameters
    ----------
    n_samples : int
    radius : float
    noise : float
        Fraction of labels flipped at random.
    seed : int or None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,), 0/1 floats
    """
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n_samples, 2))
    y = (np.hypot(X[:, 0], X[:, 1]) < radius).astype(np.float64)
    if noise > 0:
        flip = rng.random(n_samples) < noise
        y[flip] = 1 - y[flip]
    return X, y


def spirals(n_samples=1000, turns=1.5, noise=0.05, seed=0):
    """Two interleaved spirals in 2-D, labels 0/1: a harder nonlinear task."""
    rng = np.random.default_rng(seed)
    n0 = n_samples // 2
    t = np.sqrt(rng.random(n_samples)) * turns * 2 * np.pi
    label = np.r_[np.zeros(n0), np.ones(n_samples - n0)]
    angle = t + np.pi * label
    r = t / (turns * 2 * np.pi)
    X = np.c_[r * np.cos(angle), r * np.sin(angle)] + rng.normal(0, noise, (n_samples, 2))
    return X, label

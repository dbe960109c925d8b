"""Exceptions raised by fastmlp."""


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss.

    The update that met the non-finite loss is never applied, so the network
    keeps the weights it had just before it.

    Attributes
    ----------
    epoch : int
        Zero-based index of the epoch at which the loss stopped being finite.
    history : History
        The losses of the epochs completed before the divergence.
    """

    def __init__(self, message, epoch, history):
        super().__init__(message)
        self.epoch = epoch
        self.history = history

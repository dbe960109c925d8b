"""Training history returned by ``fit``."""
from dataclasses import dataclass, field


@dataclass
class History:
    """Per-epoch record of one call to ``fit``.

    Attributes
    ----------
    loss : list of float
        Objective of every epoch (data loss + L2 term). For full-batch training
        it is the objective at the start of the epoch, before its update; for
        minibatches it is the mean over the epoch's batches of each batch's
        objective measured before that batch's update, weighted by batch size.
    seconds : float
        Wall time of the whole call.
    """

    loss: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def epochs(self):
        """Number of epochs recorded."""
        return len(self.loss)

    def __len__(self):
        return len(self.loss)

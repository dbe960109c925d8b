"""Training history returned by ``fit``."""
from dataclasses import dataclass, field


@dataclass
class History:
    """Per-epoch record of one call to ``fit`` (or ``partial_fit``).

    Attributes
    ----------
    loss : list of float
        Training objective of every epoch (data loss + penalties). For
        full-batch training it is the objective at the start of the epoch,
        before its update; for minibatches it is the weighted mean over the
        epoch's batches of each batch's objective measured before that
        batch's update.
    val_loss, val_accuracy : list of float
        Objective and accuracy on the validation data after each epoch (empty
        without validation data; accuracy only for sigmoid/softmax outputs).
    learning_rate : list of float
        Step size used in each epoch.
    epoch_seconds : list of float
        Wall time of each epoch (epochs run together in one kernel call share
        that call's time evenly).
    seconds : float
        Wall time of the whole call.
    best_epoch : int or None
        Epoch (0-based) whose weights were kept by early stopping.
    stopped_early : bool
        Whether early stopping or a callback ended training.
    """

    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    learning_rate: list = field(default_factory=list)
    epoch_seconds: list = field(default_factory=list)
    seconds: float = 0.0
    best_epoch: object = None
    stopped_early: bool = False

    @property
    def epochs(self):
        """Number of epochs recorded."""
        return len(self.loss)

    def __len__(self):
        return len(self.loss)

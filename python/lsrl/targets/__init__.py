"""Target architectures (``targets.md``): importing this package registers their op kinds and lowerings.

========== ============================================ =========================================
target      ops of the lowered module                    module
========== ============================================ =========================================
linear_rnn  ``linstate``, ``linear``, ``relu``, ``multi``   :mod:`lsrl.targets.linear_rnn`
relu_rnn    ``rnn_relu``                                 :mod:`lsrl.targets.relu_rnn`
lstm        ``lstm``                                     :mod:`lsrl.targets.lstm`
gru         ``gru``                                      :mod:`lsrl.targets.gru`
========== ============================================ =========================================

Every lowered module ends with a ``linear`` readout.
"""
from . import ops  # noqa: F401  (registers rnn_relu, lstm, gru)
from . import gru, linear_rnn, lstm, relu_rnn  # noqa: F401  (register the lowerings)

TARGETS = ("linear_rnn", "relu_rnn", "lstm", "gru")
ACTIVATIONS = ("ideal", "standard")

__all__ = ["TARGETS", "ACTIVATIONS"]

"""Signals of the agreement stage, for later stages that act on new labels without it knowing them."""

from django.dispatch import Signal

# Sent after a consensus recompute has written its labels (outside its transaction), with
# ``project`` and ``now``. negatives decides its proposals' outcomes on it.
labels_recomputed = Signal()

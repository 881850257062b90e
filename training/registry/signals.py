"""Signals of the model registry, for the apps that act on a new model without it knowing them."""

from django.dispatch import Signal

# Sent once the transaction that promoted a model version has committed; ``version`` is the
# newly promoted ModelVersion. The negatives app mines with it.
model_promoted = Signal()

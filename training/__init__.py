"""The image–text matching model (the pipeline's "learn" stage), in three parts:

* ``training.core``: the model itself in plain PyTorch, with no Django and nothing of the other
  apps (model, encoders, losses, data, train loop, metrics, mining). It reads a release directory
  and writes checkpoints; ``python -m training`` is its command line.
* ``training.registry``: the Django side of the model (app label ``training_registry``): model
  versions trained from releases on the "training" queue, promotion, the nightly retrain, the
  Models page.
* ``training.negatives``: hard negatives (app label ``negatives``): proposals from random
  captions, the promoted model and text edits, bundled into challenge items people judge, and
  their outcomes.

Importing this package imports nothing; the import contract (tests/test_architecture.py) keeps
``training.core`` free of Django.
"""

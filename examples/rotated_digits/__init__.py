"""An olsim plugin package: a model, a task source and a strategy of its own, named by import path
from ``examples/rotated-digits.yaml``.

- :func:`rotated_digits.model.small_cnn`: a small convolutional network over the 8x8 digit images.
- :func:`rotated_digits.tasks.rotated_digits`: the digits turned by another quarter turn each task.
- :class:`rotated_digits.strategy.RecentReplay`: replays the last samples of every finished task.
"""

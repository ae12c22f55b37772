"""The learner: model, strategies and trainer (pure torch), evaluator metrics, and the Ray actors."""

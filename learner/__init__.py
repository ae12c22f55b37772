"""The learner: model, strategies and trainer (pure torch), metrics, gate; ``actors/`` runs them in Ray."""

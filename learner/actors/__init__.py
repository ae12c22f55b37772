"""The Ray actors of the learning side: the learner, the evaluator, and their Prometheus telemetry."""

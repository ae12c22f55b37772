"""Wiring: the ``olsim`` CLI, scenarios, the run orchestrator, load generation and reports."""

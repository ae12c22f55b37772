"""Scenarios: the YAML spec, its ``expect:`` checks, scheduled faults, and the built-in ones."""

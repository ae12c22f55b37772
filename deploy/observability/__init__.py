"""Observability: Grafana dashboards, the Prometheus launcher, and the configs both use."""

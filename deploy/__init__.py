"""Wiring: the ``olsim`` CLI and what it drives.

- ``run/``: Ray (local on loopback, or ``--address``), the learning actors, the serving stack, one run
- ``scenario/``: the scenario spec, its ``expect:`` checks and faults, the built-in YAML
- ``report/``: the report a run writes (text, HTML page, SVG plots)
- ``load/``: the open-loop generator, ``olsim load``, the Locust user
- ``bench/``: ``olsim bench`` (one module per benchmark)
- ``observability/``: dashboards, the Prometheus launcher, the Prometheus and Grafana configs
- ``serve_config.py`` + ``serve.yaml``: olsim as a plain Ray Serve config; ``k8s/``: KubeRay manifests
"""

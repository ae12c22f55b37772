"""Load on ``/predict``: the open-loop generator, the ``olsim load`` command, the Locust user."""

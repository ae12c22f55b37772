"""Serving: the weight registry and the Ray Serve deployment. Imports only pure-torch parts of learner."""

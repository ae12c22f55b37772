"""The simulated data stream: tasks, held-out splits, events. Imports nothing else from olsim."""

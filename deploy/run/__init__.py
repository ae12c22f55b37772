"""One run: Ray, the learning actors, the serving stack, the driver and its options."""

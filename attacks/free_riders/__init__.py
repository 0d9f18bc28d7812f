"""Free-riders: clients that send an update without training."""

"""Federated retraining of an IDN's access and edge tiers with Flower (see ../README.md)."""

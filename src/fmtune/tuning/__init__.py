"""Distributed search on Keras Tuner's chief/worker contract: roles, tuner, coordinator, workers."""

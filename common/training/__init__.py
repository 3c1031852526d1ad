"""Training as plain functions: epochs with an optional FedProx term, prediction, checkpoints.

Used alike by the pooled and local-only arms and by a federated hospital's local epochs.
"""

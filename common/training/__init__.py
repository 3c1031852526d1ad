"""Training as plain functions: epochs with an optional FedProx term and a cosine schedule, prediction,
checkpoints; the same for the pooled and local-only arms and a hospital's local epochs."""

"""Data, flowing one way: readers -> quality control -> preprocessing -> ingest -> store -> splits
-> model-ready arrays; ``sources`` prepares a run's stores. Torch-free and Flower-free."""

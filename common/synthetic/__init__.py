"""The built-in synthetic multi-hospital cohort: the ECG generator and its versioned cohort store.

``generator`` renders deterministic 12-lead ECGs per hospital; ``cohort`` writes them into site
stores under a key of the configuration and the generator version. Torch-free and Flower-free.
"""

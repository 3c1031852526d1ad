"""The built-in synthetic multi-hospital cohort: the ECG ``generator``, its versioned store ``key``,
and ``cohort``, which generates it into site stores (a prepare step). Torch-free and Flower-free."""

"""Evaluation: the one AUROC/AUPRC/Youden kernel and the study's statistics built on it.

``metrics`` (score-level kernels), ``bootstrap`` (patient CIs), ``thresholds``, ``subgroups``,
``calibration``, ``comparisons`` (DeLong, paired bootstrap), ``summary`` (the study's table),
``tables`` (formatting) and ``plots``. Torch-free and Flower-free.
"""

"""Experiments over prepared data: the federated/pooled/local comparison and the pooled model study.

``comparison`` runs every arm of the GAH or LOHO protocol, ``study`` trains the model zoo pooled and
writes the study's tables; both write JSON, Markdown and plots.
"""

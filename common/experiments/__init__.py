"""Experiments over prepared data: the federated / pooled / local-only ``comparison`` under GAH or LOHO,
and the pooled model ``study``; both write JSON, Markdown and plots."""

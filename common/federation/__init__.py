"""What a hospital does in a federated round, as Flower-free functions, and the protocol keys.

``hospital`` trains and evaluates on one hospital's prepared store, ``histograms`` turns scores into
the aggregate counts that may leave a hospital, ``protocol`` names the message keys. Nothing here
imports the readers or ingestion: a node only reads prepared data.
"""

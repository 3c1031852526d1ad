"""What a hospital does in a federated round (``hospital``: prepared data only, never ingestion), what may
leave it (``histograms``), the message keys (``protocol``) and a finished run's records (``outputs``)."""

"""The content-addressed store: artifact records, local and fsspec stores, inline copies, leases, verify, gc."""

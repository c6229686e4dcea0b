"""Synthetic demonstration data for the consortium ledger."""

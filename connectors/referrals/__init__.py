"""Referral delivery core: consent gate, delivery ledger, delivery worker, answer events."""

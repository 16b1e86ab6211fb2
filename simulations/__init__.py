"""Researchers' entry points: run federated, centralized and local-only experiments locally."""

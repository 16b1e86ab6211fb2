"""Tests of crossfed.server: the round loop, screening and secure aggregation."""

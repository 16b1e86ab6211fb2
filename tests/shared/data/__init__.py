"""Tests of crossfed.shared.data."""

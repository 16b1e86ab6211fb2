"""Tests of crossfed.shared."""

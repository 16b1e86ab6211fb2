"""Tests of crossfed.shared.privacy."""

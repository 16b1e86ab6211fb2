"""Tests of crossfed.shared.evaluation."""

"""Tests of crossfed.client: the Flower handlers, serving and the operator commands."""

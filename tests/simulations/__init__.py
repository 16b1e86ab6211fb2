"""Tests of crossfed.simulations: whole runs, sweeps, the loopback deployment and Ray."""

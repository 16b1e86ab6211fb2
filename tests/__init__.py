"""Tests, laid out like the packages they test: shared/, client/, server/, simulations/."""

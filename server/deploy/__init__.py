"""Tooling for a real deployment, apart from the ServerApp it launches.

:mod:`.certs` makes the CA, the SuperLink's TLS certificate and the platforms' key pairs;
:mod:`.deployment` starts a SuperLink and SuperNodes as Flower's own processes;
:mod:`.processes` stops every process such a deployment grew. Nothing in the round loop imports
them (an import-linter contract keeps it so).
"""

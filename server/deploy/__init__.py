"""Tooling for a real deployment, apart from the ServerApp it launches.

:mod:`.certs` makes the CA, the SuperLink's TLS certificate and the platforms' key pairs;
:mod:`.gateway` is the platforms' address, forwarding the SuperLink's Fleet API and nothing else;
:mod:`.deployment` starts a SuperLink, the gateway and SuperNodes as their own processes;
:mod:`.processes` stops every process such a deployment grew. Nothing in the round loop imports
them (an import-linter contract keeps it so).
"""

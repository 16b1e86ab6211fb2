"""The research workbench as a library: federated, centralized and local-only runs, sweeps, the loopback deployment."""

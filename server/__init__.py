"""crossfed ServerApp: the coordinator that aggregates shared parameters only."""

"""The coordinator's ``crossfed`` commands: catalog, certs."""

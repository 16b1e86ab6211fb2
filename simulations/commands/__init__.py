"""The researcher's ``crossfed`` commands: run, sweep, loopback."""

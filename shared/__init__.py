"""Code shared by the crossfed server, clients and simulations."""

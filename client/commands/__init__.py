"""The platform operator's ``crossfed`` commands: validate, recommend, fold-in."""

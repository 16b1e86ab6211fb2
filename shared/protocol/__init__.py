"""The wire protocol between coordinator and platforms: its keys, the typed replies, record conversions, SecAgg+ ranges."""

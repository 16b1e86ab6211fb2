"""The wire protocol between coordinator and platforms: keys, typed replies, record conversions, SecAgg+ ranges."""

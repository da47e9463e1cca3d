"""Synthetic rare-class wafer maps: conditional generators, plausibility, quality, map mixing."""

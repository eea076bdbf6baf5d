"""Streaming detectors: rollups -> features -> scores -> findings."""

"""Inputs: the catalog model, lazy raster/vector readers, validation, and grid alignment."""

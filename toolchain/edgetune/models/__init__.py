"""Model resolution: hub ids and local paths to verified local weights, offline first."""

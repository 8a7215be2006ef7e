"""Recipes: a whole pipeline in one YAML file, validated before any compute and run by `edgetune run`."""

"""Pipeline definition, configuration, runners and the `python -m pipeline` CLI."""

"""Command groups of the development tooling (``hub infra``, ``hub simulate``, ``hub demo``)."""

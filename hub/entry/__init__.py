"""Entry points: the ``hub`` CLI and the read API (with the dashboard)."""

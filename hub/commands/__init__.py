"""Command groups of the ``hub`` CLI, one module per group."""

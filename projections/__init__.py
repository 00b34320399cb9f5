"""Stream processors: pure folds from events to read-model rows, and their asyncpg shell."""

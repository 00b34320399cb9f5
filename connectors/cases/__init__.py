"""Case-management systems: REST polling and signed webhooks."""

"""Police CAD feeds: CSV drops (per-city profiles), open-data HTTP polling, NENA EIDO."""

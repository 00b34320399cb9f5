"""SQL migrations of the read API (component ``api``): the access log."""

"""The dashboard page: HTML, CSS and hand-written SVG charts (no third-party code)."""

"""Connectors: one package per external system; pure mapping code plus a thin I/O shell."""

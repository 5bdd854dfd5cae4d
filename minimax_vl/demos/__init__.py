"""Demos (never imported by the library)."""

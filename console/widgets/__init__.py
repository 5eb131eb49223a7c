"""Widgets of the sanbos console."""

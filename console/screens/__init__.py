"""Screens of the sanbos console, one module each, CSS in a .tcss next to it."""

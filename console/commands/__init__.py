"""Sub-commands of the ``sanbos`` CLI, one module per command group."""

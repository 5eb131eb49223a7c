"""Plain: a Static that never parses markup.

Disk IDs, file names, engine messages and log lines are data, not markup:
an error message containing ``[x]`` must show as typed, never vanish or
raise a MarkupError.
"""

from __future__ import annotations

from textual.widgets import Static


class Plain(Static):
    def __init__(self, content="", **kwargs) -> None:
        kwargs.setdefault("markup", False)
        super().__init__(content, **kwargs)

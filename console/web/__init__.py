"""The SAN boot device web service (Starlette): firmware query API, configuration API, pages."""

from .app import create_app

__all__ = ["create_app"]

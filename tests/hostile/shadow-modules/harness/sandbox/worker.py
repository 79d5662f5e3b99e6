"""Shadows a module the worker imports (see shadow_mark.py): an import error stops the worker too."""
import shadow_mark  # noqa: F401

"""The operator's search service (`python -m sen_infer serve`): an HTTP API and a search page.

Needs the `serve` extra (`pip install 'sen-person-search[serve]'`: FastAPI, uvicorn, python-multipart);
the base SDK does not import this package.
"""

from importlib import import_module

__all__ = ["AccessError", "KeyFile", "Limits", "ServeConfig", "create_app"]

# name -> module; loaded on first use (PEP 562), so `sen_infer.serve.limits` can be read (the CLI's --help)
# without importing FastAPI
_WHERE = {"AccessError": "errors", "KeyFile": "auth", "Limits": "limits", "ServeConfig": "config", "create_app": "app"}


def __getattr__(name: str):
    """The package's exported names, imported from their modules when first asked for."""
    if name not in _WHERE:
        raise AttributeError(f"module 'sen_infer.serve' has no attribute {name!r}")
    return getattr(import_module(f"sen_infer.serve.{_WHERE[name]}"), name)

"""The operator's search service (`python -m sen_infer serve`): an HTTP API and a search page.

Needs the `serve` extra (`pip install 'sen-person-search[serve]'`: FastAPI, uvicorn, python-multipart);
the base SDK does not import this package.
"""

from sen_infer.serve.app import create_app
from sen_infer.serve.auth import KeyFile
from sen_infer.serve.config import ServeConfig
from sen_infer.serve.errors import AccessError
from sen_infer.serve.limits import Limits

__all__ = ["AccessError", "KeyFile", "Limits", "ServeConfig", "create_app"]

"""The service's routes, one router per resource; `create_app` includes them in this order (which is the
order of the paths in the OpenAPI schema)."""

from sen_infer.serve.routes import audit, evidence, gallery, health, pages, query

ROUTERS = (query.router, evidence.router, gallery.router, audit.router, health.router, pages.router)

__all__ = ["ROUTERS"]

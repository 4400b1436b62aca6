"""Reading the audit log (admin keys only): searches of surveillance footage are themselves sensitive, so
whoever reviews them is recorded too.

Handlers say why in comments: FastAPI publishes a handler's docstring in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from sen_infer.serve.deps import AdminKey, ServiceDep
from sen_infer.serve.errors import LimitExceeded
from sen_infer.serve.schemas import API, LIMITS

router = APIRouter(prefix=API, tags=["admin"])


# The last `limit` audit records, oldest first; reading them adds a line of its own.
@router.get("/audit", summary="The last audit records (admin keys only)")
def audit(request: Request, svc: ServiceDep, caller: AdminKey,
          limit: Annotated[int, Query(ge=1, le=LIMITS.max_audit, description="records to return")] = 100):
    if not 1 <= limit <= svc.limits.max_audit:  # the schema's bound, and the service's own
        raise LimitExceeded(f"limit must be between 1 and {svc.limits.max_audit}")
    lines = svc.audit.tail(limit)
    svc.audit_request(request, caller, 200, lines=len(lines))  # reading the log is logged
    return {"lines": lines}

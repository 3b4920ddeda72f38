"""ASGI entry point of the lab's Ralph LRS.

Ralph 5.1.0's fs backend stores the first write only and answers HTTP 500 to every later POST:
its default operation type is CREATE. Switch it to APPEND before the API imports the backend.
"""

from ralph.backends.data.base import BaseOperationType
from ralph.backends.lrs.fs import FSLRSBackend

FSLRSBackend.default_operation_type = BaseOperationType.APPEND

from ralph.api import app  # noqa: E402  (must come after the fix above)

__all__ = ["app"]

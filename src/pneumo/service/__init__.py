"""The web service: a REST API under ``/api/v1`` and an offline web page, with a history of analyses.

``create_app(ServiceSettings(...))`` builds the FastAPI app; ``pneumo serve`` runs it with uvicorn.
"""

from pneumo.service.app import create_app
from pneumo.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]

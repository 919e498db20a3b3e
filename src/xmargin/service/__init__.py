"""The HTTP service and web dashboard (``xmargin serve``): what-if margin for every member, live.

:func:`~xmargin.service.app.create_app` builds the FastAPI application over a
:class:`~xmargin.service.state.ServiceState` (a ledger session: the live engine, the collateral
book and the ledger in step); :mod:`~xmargin.service.auth` holds the API keys (hashed);
:mod:`~xmargin.service.models` the request and response models of the OpenAPI document.
"""

from xmargin.service.app import create_app
from xmargin.service.auth import KeyStore, Principal
from xmargin.service.state import ServiceConfig, ServiceState

__all__ = ["KeyStore", "Principal", "ServiceConfig", "ServiceState", "create_app"]

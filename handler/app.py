"""The composition root: ``create_app()`` wires settings, adapters and routes.

Run it with ``uvicorn handler.app:create_app --factory``. Tests pass their own
``Settings`` and fakes; real adapters are built only for what is not given.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import metadata

from fastapi import FastAPI

from handler.authgate import AuthGate, GatePolicy
from handler.errors import install_error_handlers
from handler.logs import configure_logging
from handler.maintenance import Maintenance
from handler.middleware import BodyLimitMiddleware, RequestIdMiddleware
from handler.poolfill import PoolFillReporter
from handler.ptc_routes import build_ptc_router
from handler.routes import build_router
from handler.services import Services, build_services
from handler.settings import Settings, get_settings
from handler.status import build_status_router
from runner.base import Sandbox
from runner.ptc import ProgramSandbox
from storage.base import SessionStore

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return metadata.version("rce")
    except metadata.PackageNotFoundError:
        return "0.1.0"


VERSION = _version()


def _body_limit(settings: Settings) -> Callable[[str, str], int]:
    """Multipart bodies on the upload routes have the upload caps; every other body
    (JSON above all) has ``RCE_MAX_BODY_BYTES``, whatever the route."""
    upload_limit = settings.max_upload_bytes + 1024 * 1024  # the file and its form fields
    batch_limit = settings.max_batch_bytes

    def limit_for(path: str, content_type: str) -> int:
        if content_type.lower().startswith("multipart/form-data"):
            if path.endswith("/upload/batch"):
                return batch_limit
            if path.endswith("/upload"):
                return upload_limit
        return settings.max_body_bytes

    return limit_for


def _pool_fill_reporter(services: Services) -> PoolFillReporter | None:
    """Start-up progress of the warm pools, when the sandbox has any."""
    stats = getattr(services.sandbox, "stats", None)
    if not callable(stats):
        return None
    settings = services.settings
    floors = {
        "light": settings.pool_size,
        "data": settings.pool_data_size,
        "r": settings.pool_r_size,
        "node": settings.pool_node_size,
        "java": settings.pool_java_size,
    }
    return PoolFillReporter(stats, floors)


def create_app(
    settings: Settings | None = None,
    *,
    store: SessionStore | None = None,
    sandbox: Sandbox | None = None,
    program_sandbox: ProgramSandbox | None = None,
    maintenance: bool = True,
) -> FastAPI:
    """Build the API. Adapters that are not given are built from ``settings``."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    services = build_services(
        settings, store=store, sandbox=sandbox, program_sandbox=program_sandbox
    )
    for warning in services.startup_warnings():
        log.warning(warning)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = Maintenance(services) if maintenance else None
        if worker:
            worker.start()
        fill = _pool_fill_reporter(services)
        if fill:
            fill.start()
        try:
            yield
        finally:
            if fill:
                fill.stop()
            if worker:
                worker.stop()
            services.close()

    app = FastAPI(
        title="rce",
        summary="Sandboxed code interpreter API for LibreChat",
        version=VERSION,
        lifespan=lifespan,
        # RCE_DOCS_ACCESS=off: no /docs, /redoc or /openapi.json at all.
        openapi_url=None if settings.docs_access == "off" else "/openapi.json",
    )
    app.state.services = services
    install_error_handlers(app)
    router = build_router(metrics_on=settings.metrics_access != "off")
    app.include_router(router)
    app.include_router(router, prefix="/v1", include_in_schema=False)
    status = build_status_router(VERSION)
    app.include_router(status)
    app.include_router(status, prefix="/v1")
    programs = build_ptc_router()
    app.include_router(programs)
    app.include_router(programs, prefix="/v1", include_in_schema=False)
    # Outermost last: request id, then authentication (headers only), then body limits.
    app.add_middleware(BodyLimitMiddleware, limit_for=_body_limit(settings))
    app.add_middleware(AuthGate, auth=services.auth, policy=GatePolicy.from_settings(settings))
    app.add_middleware(RequestIdMiddleware)
    return app


__all__ = ["Services", "create_app"]

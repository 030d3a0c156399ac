"""The release dashboard's web app: FastAPI routes rendering Jinja templates, all read-only.

Pages (every one a GET; links are relative to ``ui.base_url``'s path, so the app can sit
under a prefix behind a proxy):

- ``/``: each model's production, previous and canary versions, pending approvals, and what
  the last night made (its newest version, or a batch quarantined since);
- ``/models/<model>/versions``: the versions, newest first, a page at a time;
- ``/models/<model>/versions/<n>``: metrics beside the baseline's with the per-class recall
  chart, the confusion matrix, lineage, the model card, the decision and its history;
- ``/models/<model>/timeline``: which version served as production when, who decided, why;
- ``/audit``: the audit log, filtered by model, actor, action and time;
- ``/quarantine``: quarantined batches, each with its Data Docs page.

Charts are SVG drawn on the server (``tasks.charts``); pages load nothing from elsewhere, and a
Content-Security-Policy says so. Nothing from the settings is shown but model names and links:
no token, secret or database URL reaches a page. Errors are one-line pages, never tracebacks.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from core.orchestrator import flow_run_url
from core.settings import Settings
from dashboard.lineage import accepted_folder, data_lineage, model_card, quarantine_folder
from dashboard.quarantine import quarantined_batches, report_page
from registry.browse import EventFilter, Page
from registry.errors import VersionNotFound
from registry.lifecycle import PRODUCTION
from registry.models import AuditAction, VersionStatus
from registry.reader import RegistryReader
from tasks.charts import AccuracyPoint, accuracy_over_time_chart, confusion_matrix_chart, inline_svg, recall_chart
from tasks.comparison import compare

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Our pages load nothing from elsewhere: inline CSS and SVG only, no script.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"
TIMELINE_CHART_POINTS = 200  # production changes drawn on the timeline's chart


class PageError(Exception):
    """A page that cannot be shown, with its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(settings: Settings, reader: RegistryReader) -> FastAPI:
    """The dashboard on ``reader`` (a read-only registry), with ``settings`` for model names,
    data folders, page size and link addresses.

    Returns:
        A FastAPI app (ASGI); ``tfrelease ui`` serves it with uvicorn.
    """
    app = FastAPI(title="tfrelease", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    prefix = urlsplit(settings.ui.base_url).path.rstrip("/") if settings.ui.base_url else ""
    page_size = settings.ui.page_size
    _add_helpers(templates, settings, prefix)

    def render(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=code)

    def known_model(model: str) -> str:
        if model not in settings.models and model not in reader.list_models():
            raise PageError(404, f"no model named {model!r}")
        return model

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> HTMLResponse:
        models = reader.model_overviews(settings.models)
        quarantined = {m.name: quarantined_batches(quarantine_folder(settings, m.name), m.name) for m in models}
        return render(request, "overview.html", models=models, quarantined=quarantined, now=datetime.now(UTC))

    @app.get("/models/{model}", response_class=HTMLResponse)
    @app.get("/models/{model}/versions", response_class=HTMLResponse)
    def versions(
        request: Request,
        model: str,
        before: Annotated[int | None, Query()] = None,
        after: Annotated[int | None, Query()] = None,
        status: Annotated[VersionStatus | None, Query()] = None,
    ) -> HTMLResponse:
        known_model(model)
        page = reader.versions_page(model, before=before, after=after, limit=page_size, status=status)
        decided = reader.decisions(model, [row.version for row in page.rows])
        return render(
            request,
            "versions.html",
            model=model,
            page=page,
            pager=_pager(request, page),
            decided=decided,
            status=status,
            statuses=list(VersionStatus),
        )

    @app.get("/models/{model}/versions/{version}", response_class=HTMLResponse)
    def version_page(request: Request, model: str, version: int) -> HTMLResponse:
        try:
            record = reader.get_version(model, version)
        except VersionNotFound as error:
            raise PageError(404, str(error)) from None
        recall_svg, matrix_svg = _version_charts(
            version, record.baseline_version, json.dumps(record.metrics), json.dumps(record.baseline_metrics)
        )
        card = model_card(record.path)
        return render(
            request,
            "version.html",
            model=model,
            record=record,
            comparison=compare(record.metrics, record.baseline_metrics),
            recall_svg=recall_svg,
            matrix_svg=matrix_svg,
            lineage=data_lineage(accepted_folder(settings, model), list(record.batches or []), record.data_fingerprint),
            card=_card_text(card) if card is not None else None,
            events=reader.version_events(model, version),
            production=reader.get_alias(model, PRODUCTION),
        )

    @app.get("/models/{model}/timeline", response_class=HTMLResponse)
    def timeline(
        request: Request,
        model: str,
        before: Annotated[int | None, Query()] = None,
        after: Annotated[int | None, Query()] = None,
    ) -> HTMLResponse:
        known_model(model)
        page = reader.production_timeline(model, before=before, after=after, limit=page_size)
        chart = None
        if before is None and after is None:
            history = reader.production_history(model, limit=TIMELINE_CHART_POINTS)
            points = tuple(AccuracyPoint(change.at, change.version, change.accuracy) for change in history)
            chart = _accuracy_chart(points, datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))
        return render(request, "timeline.html", model=model, page=page, pager=_pager(request, page), chart=chart)

    @app.get("/audit", response_class=HTMLResponse)
    def audit(
        request: Request,
        model: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: Annotated[int | None, Query()] = None,
        after: Annotated[int | None, Query()] = None,
    ) -> HTMLResponse:
        where = EventFilter(
            model=model or None,
            actor=(actor or "").strip() or None,
            action=_action(action),
            since=_moment(since, "since"),
            until=_moment(until, "until", end_of_day=True),
        )
        page = reader.events_page(where, before=before, after=after, limit=page_size)
        form = {"model": model or "", "actor": actor or "", "action": action or "", "since": since or "", "until": until or ""}
        models = sorted(set(settings.models) | set(reader.list_models()))
        return render(
            request, "audit.html", page=page, pager=_pager(request, page), form=form, models=models, actions=list(AuditAction)
        )

    @app.get("/quarantine", response_class=HTMLResponse)
    def quarantine(request: Request) -> HTMLResponse:
        models = sorted(set(settings.models) | set(reader.list_models()))
        batches = [batch for model in models for batch in quarantined_batches(quarantine_folder(settings, model), model)]
        batches.sort(key=lambda batch: batch.quarantined_at, reverse=True)
        return render(request, "quarantine.html", batches=batches)

    @app.get("/models/{model}/quarantine/{name}")
    def data_docs(model: str, name: str) -> FileResponse:
        known_model(model)
        page = report_page(quarantine_folder(settings, model), name)
        if page is None:
            raise PageError(404, f"model {model!r} has no quarantined batch {name!r} with a Data Docs page")
        # GX's page loads its styles from public CDNs: not our policy's business.
        return FileResponse(page, media_type="text/html", headers={"Content-Security-Policy": "frame-ancestors 'none'"})

    @app.exception_handler(PageError)
    def page_error(request: Request, error: PageError) -> HTMLResponse:
        return render(request, "error.html", code=error.status, message=error.message)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, error: HTTPException) -> HTMLResponse:
        message = "no such page" if error.status_code == 404 else str(error.detail)
        return render(request, "error.html", code=error.status_code, message=message)

    @app.exception_handler(RequestValidationError)
    def bad_request(request: Request, error: RequestValidationError) -> HTMLResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in error.errors())
        return render(request, "error.html", code=400, message=f"bad request: {problems}")

    @app.exception_handler(OperationalError)
    def registry_down(request: Request, error: OperationalError) -> HTMLResponse:
        # The driver's message may name the database URL; the log gets it, the page does not.
        logger.warning("registry read failed: %s", str(error.orig).strip().splitlines()[0] if error.orig else error)
        return render(request, "error.html", code=503, message="the registry cannot be read right now; try again shortly")

    return app


@lru_cache(maxsize=256)
def _version_charts(version: int, baseline_version: int | None, metrics: str, baseline_metrics: str) -> tuple[str | None, str | None]:
    """(per-class recall chart, confusion matrix chart) of a version as inline SVG, None where its
    metrics lack the figures. Keyed by the metrics as JSON: a version's are recorded once, so a
    page seen again reuses its charts (drawing both takes about 0.3 s)."""
    figures, baseline = json.loads(metrics) or {}, json.loads(baseline_metrics) or {}
    recall, matrix = figures.get("per_class_recall"), figures.get("confusion_matrix")
    against = f"baseline v{baseline_version}" if baseline_version is not None else "baseline"
    recall_svg = (
        inline_svg(recall_chart(recall, baseline.get("per_class_recall"), candidate_label=f"v{version}", baseline_label=against))
        if recall
        else None
    )
    matrix_svg = inline_svg(confusion_matrix_chart(matrix, title=f"Confusion matrix of v{version}")) if matrix else None
    return recall_svg, matrix_svg


@lru_cache(maxsize=64)
def _accuracy_chart(points: tuple[AccuracyPoint, ...], until: datetime) -> str:
    """Production's accuracy over time as inline SVG, drawn up to ``until`` (the next full
    hour, so that a model's chart is drawn again at most hourly or when production changes)."""
    return inline_svg(accuracy_over_time_chart(points, until=until))


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9][0-9.eE+-]*(?:,\s*-?[0-9][0-9.eE+-]*)*)\s*\]")


def _card_text(card: dict[str, Any]) -> str:
    """The model card as indented JSON, each list of numbers on one line (a confusion matrix
    row, the per-example predictions) rather than one number per line."""
    return _NUMBER_LIST.sub(lambda found: "[" + ", ".join(part.strip() for part in found.group(1).split(",")) + "]", json.dumps(card, indent=2))


def _add_helpers(templates: Jinja2Templates, settings: Settings, prefix: str) -> None:
    env = templates.env
    env.globals["url"] = lambda path: prefix + path
    env.globals["run_url"] = lambda run_id: flow_run_url(settings, run_id) if run_id else None
    env.filters["fraction"] = lambda value: "—" if value is None else f"{value:.4f}"
    env.filters["signed"] = lambda value: "" if value is None else f"{value:+.4f}"
    env.filters["utc"] = lambda moment: "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    env.filters["short"] = lambda text, n=12: "" if not text else (text if len(text) <= n else text[:n] + "…")


def _pager(request: Request, page: Page[Any]) -> dict[str, str | None]:
    """Links to the newer and older pages, keeping the request's other query parameters."""
    kept = [(key, value) for key, value in request.query_params.multi_items() if key not in ("before", "after")]

    def link(key: str, value: int | None) -> str | None:
        return None if value is None else "?" + urlencode([*kept, (key, str(value))])

    return {"newer": link("after", page.newer), "older": link("before", page.older)}


def _action(text: str | None) -> AuditAction | None:
    if not text:
        return None
    try:
        return AuditAction(text)
    except ValueError:
        raise PageError(400, f"unknown action {text!r}; one of {', '.join(a.value for a in AuditAction)}") from None


def _moment(text: str | None, name: str, *, end_of_day: bool = False) -> datetime | None:
    """A filter bound: an ISO date (``2026-11-30``; ``until`` then includes that day) or date and
    time (``2026-11-30T14:00``), read as UTC unless it names its offset."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1) if end_of_day else day, time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PageError(400, f"{name}: {text!r} is not a date (2026-11-30) or date and time (2026-11-30T14:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

"""``tailor dashboard``: the web app over one folder of runs (FastAPI + uvicorn, as ``tailor serve``).

Pages: ``/`` the run list (dashboard/index.py), ``/run?path=REL`` a run with its live status, ``/compare?path=A&
path=B`` 2 to 5 runs side by side (``tailor compare``'s table and verdicts), ``/launch`` the
recipe launcher and its jobs (dashboard/jobs.py), ``/review?path=REL`` the expert review (dashboard/reviewing.py),
``/files/REL`` a run's report and charts. JSON: ``/api/runs``, ``/api/progress?path=REL`` (what the run page
polls every second while a job runs), ``/api/validate``, ``/api/jobs`` (list, start), ``/api/jobs/ID/stop`` and
``/resume``, ``/api/review?path=REL``.

Why these guards: the page can start processes and write data files, so it binds 127.0.0.1 by default, answers
only requests addressed to this machine's names (a DNS-rebinding page cannot reach it), refuses a POST without
the ``X-Tailor-Dashboard`` header (another site's page cannot send it), and serves files only from inside the
folder it was given. A user's mistake is a 400 whose ``error`` is the same one line the CLI prints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from tailorlm.dashboard import pages
from tailorlm.dashboard.index import build_index, classify, progress, progress_text, read_json
from tailorlm.dashboard.jobs import Jobs, validate
from tailorlm.dashboard.reviewing import review_data, save_review
from tailorlm.errors import UserError

log = logging.getLogger("tailorlm.dashboard")

#: files /files/ serves from a run directory (reports, charts, tables); never weights, data or anything else
SERVED_SUFFIXES = frozenset({".html", ".md", ".png", ".svg", ".csv", ".json", ".txt", ".css"})
LOCAL_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def locate(root: Path, rel: str | None) -> Path:
    """The folder or file ``rel`` names inside ``root``; anything outside it (``..``, an absolute path) is refused."""
    target = (root / (rel or ".")).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        raise UserError(f"{rel}: not inside {root}; the dashboard shows only what is under its folder")
    return target


def entry_at(root: Path, rel: str) -> Any:
    """The index row of the folder ``rel``, or a UserError when tailorlm wrote nothing there."""
    import os

    folder = locate(root, rel)
    if not folder.is_dir():
        raise UserError(f"{rel}: no such run directory under {root}")
    entry = classify(folder, rel, set(os.listdir(folder)))
    if entry is None:
        raise UserError(f"{rel}: not a run directory, tune study or comparison (no status.json or metrics.json)")
    return entry


def read_trials(folder: Path, limit: int = 500) -> list[dict[str, str]]:
    """The rows of a tune study's trials.csv (at most ``limit``), or [] for any other folder."""
    import csv

    path = folder / "trials.csv"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return [row for _, row in zip(range(limit), csv.DictReader(handle), strict=False)]


def _links(folder: Path, rel: str) -> list[tuple[str, str, str]]:
    links = []
    for ident, name, label in (("report-link", "report.html", "report.html"), ("tune-link", "tune_report.html",
                               "tune report"), ("compare-link", "compare.md", "compare.md"),
                               ("study-link", "study.md", "study.md")):
        if (folder / name).is_file():
            links.append((ident, label, f"/files/{quote(rel)}/{name}" if rel != "." else f"/files/{name}"))
    if (folder / "predictions.jsonl").is_file() or any(folder.glob("seed-*/predictions.jsonl")):
        links.append(("review-link", "review its errors", f"/review?path={quote(rel)}"))
    return links


def create_app(root: Path, host: str = "127.0.0.1") -> FastAPI:
    """The dashboard of ``root``; its jobs run in the current folder, where a recipe's relative paths were
    validated."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; pass the folder your runs are in (default runs/), or create it")
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=[*LOCAL_HOSTS, host])
    jobs = Jobs(root)
    app.state.jobs = jobs

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=400)
        return HTMLResponse(pages.error_page(str(exc), 400), status_code=400)

    _page_routes(app, root)
    _api_routes(app, root, jobs)
    return app


def _page_routes(app: FastAPI, root: Path) -> None:
    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return pages.index_page(str(root), build_index(root))

    @app.get("/run", response_class=HTMLResponse)
    def run(path: str = ".") -> str:
        entry = entry_at(root, path)
        folder = locate(root, path)
        metrics = read_json(folder / "metrics.json")
        return pages.run_page(entry, metrics, _links(folder, path), progress(folder), read_trials(folder))

    @app.get("/compare", response_class=HTMLResponse)
    def compare(path: Annotated[list[str], Query()]) -> str:
        return compare_runs(root, path)

    @app.get("/launch", response_class=HTMLResponse)
    def launch() -> str:
        return pages.launch_page()

    @app.get("/review", response_class=HTMLResponse)
    def review(path: str) -> str:
        return pages.review_page(path, review_data(locate(root, path)))

    @app.get("/files/{rel:path}")
    def files(rel: str) -> Response:
        target = locate(root, rel)
        if not target.is_file() or target.suffix.lower() not in SERVED_SUFFIXES:
            return HTMLResponse(pages.error_page(f"{rel}: no such report or chart", 404), status_code=404)
        return FileResponse(target)


def compare_runs(root: Path, paths: list[str]) -> str:
    """The comparison page of 2 to 5 runs (evaluate/compare.py, imported here: it needs numpy)."""
    from tailorlm.evaluate.compare import compare, rows, verdict_line

    if not 2 <= len(paths) <= 5:
        raise UserError(f"compare: select 2 to 5 runs, not {len(paths)}")
    comparison = compare([locate(root, path) for path in paths])
    table = rows(comparison)  # the results first, then the recipe keys that differ (often many)
    table = [row for row in table if not row[0].startswith("recipe:")] + [row for row in table
                                                                          if row[0].startswith("recipe:")]
    return pages.compare_page(paths, [s.name for s in comparison.runs], table,
                              [verdict_line(test) for test in comparison.tests])


def _posted(request: Request) -> None:
    if request.headers.get(pages.CSRF_HEADER) != "1":
        raise UserError(f"POST without the {pages.CSRF_HEADER} header; use the dashboard's own page")


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object of a POST from the dashboard's page (its header checked first)."""
    _posted(request)
    try:
        body = await request.json()
    except ValueError:
        raise UserError("the request body is not JSON; use the dashboard's own page") from None
    if not isinstance(body, dict):
        raise UserError("the request body must be a JSON object; use the dashboard's own page")
    return body


def _api_routes(app: FastAPI, root: Path, jobs: Jobs) -> None:
    @app.get("/api/runs")
    def runs() -> list[dict[str, Any]]:
        return [entry.as_dict() for entry in build_index(root)]

    @app.get("/api/progress")
    def live(path: str) -> dict[str, Any]:
        entry = entry_at(root, path)
        info = progress(locate(root, path))
        return entry.as_dict() | info | {"progress_text": progress_text(info) if entry.status == "running" else ""}

    @app.post("/api/validate")
    async def check(request: Request) -> dict[str, Any]:
        body = await _body(request)
        recipe, overrides, name = validate(body.get("yaml", ""), body.get("sets", ""), body.get("name"))
        summary = f"{name}: {recipe.task} run into {recipe.output_dir}" + (
            f" with {len(overrides)} override(s)" if overrides else "")
        return {"ok": True, "summary": summary, "output_dir": str(recipe.output_dir)}

    @app.get("/api/jobs")
    def listing() -> list[dict[str, Any]]:
        return jobs.listing()

    @app.post("/api/jobs")
    async def start(request: Request) -> dict[str, Any]:
        body = await _body(request)
        return jobs.start(body.get("yaml", ""), body.get("sets", ""), body.get("name")).as_dict(root)

    @app.post("/api/jobs/{job_id}/stop")
    def stop(job_id: str, request: Request) -> dict[str, Any]:
        _posted(request)
        return jobs.stop(job_id).as_dict(root)

    @app.post("/api/jobs/{job_id}/resume")
    def resume(job_id: str, request: Request) -> dict[str, Any]:
        _posted(request)
        return jobs.resume(job_id).as_dict(root)

    @app.post("/api/review")
    async def review(path: str, request: Request) -> dict[str, Any]:
        body = await _body(request)
        corrections = body.get("corrections")
        if not isinstance(corrections, list):
            raise UserError('review: send {"corrections": [{"id": ..., "corrected_label": ...}]}')
        return save_review(locate(root, path), corrections)


def serve_dashboard(folder: Path, host: str = "127.0.0.1", port: int = 8080,
                    announce: Callable[[str], None] | None = None) -> None:
    """Run the dashboard until Ctrl+C; jobs it started keep running (their own sessions). ``announce`` gets the
    address once the folder is known to be usable (a bad folder is one line, before anything is printed)."""
    import socket

    import uvicorn

    app = create_app(Path(folder), host=host)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"{host}:{port}: cannot listen ({exc.strerror or exc})",
                        fix="pick another --port, or stop the program using it") from None
    if announce is not None:
        announce(f"http://{'[' + host + ']' if ':' in host else host}:{port}/")
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()

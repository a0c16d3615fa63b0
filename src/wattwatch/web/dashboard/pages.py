"""Dashboard pages: login/logout, overview, sites tree, device, alerts, reports, claim, admin."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from wattwatch import __version__
from wattwatch.domain import METRICS, DeviceKind, DeviceProtocol, Role, now_ms
from wattwatch.errors import AuthError, NotFound, RateLimited, WattwatchError
from wattwatch.registry.service import Principal
from wattwatch.web.dashboard import TEMPLATES_DIR, session, views

if TYPE_CHECKING:
    from wattwatch.app import Wattwatch

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


class LoginRequired(Exception):
    """A page was asked for without a valid session: answered with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def _ww(request: Request) -> Wattwatch:
    return request.app.state.ww  # type: ignore[no-any-return]


def _page_principal(request: Request) -> Principal:
    token = session.session_token(request)
    if token is None:
        raise LoginRequired(request.url.path)
    try:
        return _ww(request).registry.principal_for_token(token)
    except AuthError:
        raise LoginRequired(request.url.path) from None


PageCaller = Annotated[Principal, Depends(_page_principal)]


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, exc: LoginRequired) -> Response:
        response = RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)
        if session.session_token(request):  # expired or revoked: forget it
            session.clear_session(response, request)
        return response

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, _: CsrfFailed) -> Response:
        message = "This form was not sent from this session's page. Reload the page and try again."
        return render(request, "error.html", _page_principal(request), 403, message=message)


# -- rendering ------------------------------------------------------------------------------
def _fmt_power(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f} kW"
    if abs(value) >= 1000:
        return f"{value / 1000:.2f} kW"
    return f"{value:.0f} W" if abs(value) >= 10 else f"{value:.1f} W"


def _fmt_time(ms: int | None) -> str:
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: float | None, fmt: str, scale: float = 1.0) -> str:
    return "–" if value is None else fmt % (value * scale)


def _iso(ms: int | None) -> str:
    return "" if not ms else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


templates.env.filters["power"] = _fmt_power
templates.env.filters["when"] = _fmt_time
templates.env.filters["iso"] = _iso
templates.env.filters["num"] = _num
templates.env.globals["version"] = __version__
templates.env.globals["metrics"] = METRICS


def render(
    request: Request,
    name: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    token = session.session_token(request)
    features = views.available_features(request.app)
    must_change = False
    if principal is not None:
        account = _ww(request).registry.db.user_by_email(principal.email)
        must_change = bool(account and account["must_change_password"])
    response = templates.TemplateResponse(
        request,
        name,
        {
            "user": principal,
            "csrf": session.csrf_for(token) if (principal and token) else "",
            "features": features,
            "can_control": principal is not None and session.can_control(principal),
            "is_admin": principal is not None and principal.role.at_least(Role.ADMIN),
            "path": request.url.path,
            "must_change_password": must_change,
            **context,
        },
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


class CsrfFailed(Exception):
    """A form came without this session's CSRF token: refused, and the session is kept (a
    forged post must not even log the victim out)."""


def _check_form_csrf(request: Request, given: str) -> None:
    token = session.session_token(request)
    if token is None:
        raise LoginRequired(request.url.path)
    if not session.csrf_ok(token, given):
        raise CsrfFailed


def _safe_next(value: str | None) -> str:
    """Only a path on this site: never //host or a scheme (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/overview"
    return value


# -- login and logout -------------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    token = session.session_token(request)
    if token:
        try:
            _ww(request).registry.principal_for_token(token)
            return RedirectResponse(_safe_next(next), status_code=303)
        except AuthError:
            pass
    return _login_form(request, next, None, 200)


def _login_form(
    request: Request, next_path: str | None, error: str | None, status: int
) -> Response:
    csrf = session.login_csrf(request)
    response = render(
        request,
        "login.html",
        None,
        status_code=status,
        login_csrf=csrf,
        next=_safe_next(next_path),
        error=error,
    )
    session.set_login_csrf(response, request, csrf)
    return response


@router.post("/login")
def login_submit(
    request: Request,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/overview",
) -> Response:
    cookie = request.cookies.get(session.LOGIN_CSRF_COOKIE, "")
    if not cookie or not csrf_token or cookie != csrf_token:
        return _login_form(request, next, "The form expired; please try again.", 403)
    ww = _ww(request)
    try:
        token, _ = ww.registry.login(email, password)
    except RateLimited as exc:
        return _login_form(request, next, str(exc), 429)
    except AuthError as exc:
        return _login_form(request, next, str(exc), 401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    session.set_session(response, request, token, ww.settings.login_token_ttl_s)
    response.delete_cookie(session.LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
    token = session.session_token(request)
    response = RedirectResponse("/login", status_code=303)
    if token and session.csrf_ok(token, csrf_token):
        _ww(request).registry.logout(token)
        session.clear_session(response, request)
    return response


# -- pages ------------------------------------------------------------------------------------
@router.get("/")
def home(request: Request) -> Response:
    return RedirectResponse("/overview" if session.session_token(request) else "/login", 303)


@router.get("/overview")
def overview_page(request: Request, caller: PageCaller) -> Response:
    sites, unplaced = views.overview(_ww(request), caller.org_id)
    return render(request, "overview.html", caller, sites=sites, unplaced=unplaced)


@router.get("/sites")
def sites_page(request: Request, caller: PageCaller) -> Response:
    ww = _ww(request)
    sites, unplaced = views.overview(ww, caller.org_id)
    tree = []
    for site in sites:
        areas = views.areas_of(ww, caller, site.record["id"])
        groups: dict[int | None, list[views.DeviceNow]] = {}
        for d in site.devices:
            groups.setdefault(d.record.get("area_id"), []).append(d)
        named = [
            (areas.get(area_id, f"Area {area_id}"), devs)
            for area_id, devs in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
            if area_id is not None
        ]
        for area_id, name in areas.items():
            if area_id not in groups:
                named.append((name, []))
        tree.append((site, named, groups.get(None, [])))
    return render(request, "sites.html", caller, tree=tree, unplaced=unplaced)


@router.get("/devices/{device_id}")
def device_page(request: Request, device_id: int, caller: PageCaller) -> Response:
    ww = _ww(request)
    try:
        device = ww.registry.get_device(caller, device_id)
    except NotFound:
        return render(request, "error.html", caller, 404, message="No such device.")
    now = views.device_now(ww, caller.org_id, device, now_ms())
    site = area = None
    if device.get("site_id") is not None:
        site = ww.registry.db.get_site(caller.org_id, device["site_id"])
        if device.get("area_id") is not None:
            area = views.areas_of(ww, caller, site["id"]).get(device["area_id"])
    state = device.get("state")
    for point in now.channels.values():
        if point.get("state") is not None:
            state = int(point["state"])
    return render(
        request,
        "device.html",
        caller,
        device=device,
        now=now,
        site=site,
        area=area,
        state=state,
        switchable=device["kind"] == DeviceKind.PLUG,
    )


@router.get("/alerts")
def alerts_page(request: Request, caller: PageCaller) -> Response:
    devices = _ww(request).registry.db.list_devices(caller.org_id)
    return render(
        request, "alerts.html", caller, device_names={d["id"]: d["name"] for d in devices}
    )


@router.get("/reports")
def reports_page(request: Request, caller: PageCaller) -> Response:
    sites = _ww(request).registry.db.list_sites(caller.org_id)
    return render(request, "reports.html", caller, sites=sites)


@router.get("/claim")
def claim_page(request: Request, caller: PageCaller) -> Response:
    ww = _ww(request)
    sites = ww.registry.db.list_sites(caller.org_id)
    areas = {s["id"]: views.areas_of(ww, caller, s["id"]) for s in sites}
    return render(request, "claim.html", caller, sites=sites, areas=areas)


# -- admin --------------------------------------------------------------------------------------
def _admin(request: Request, caller: Principal, status: int = 200, **extra: Any) -> Response:
    ww = _ww(request)
    return render(
        request,
        "admin.html",
        caller,
        status_code=status,
        users=ww.registry.db.list_users(caller.org_id),
        devices=ww.registry.db.list_devices(caller.org_id),
        sites=ww.registry.db.list_sites(caller.org_id),
        roles=[str(r) for r in Role],
        kinds=[str(k) for k in DeviceKind],
        protocols=[str(p) for p in DeviceProtocol],
        **extra,
    )


@router.get("/admin")
def admin_page(request: Request, caller: PageCaller) -> Response:
    return _admin(request, caller)


def _admin_action(request: Request, caller: Principal, csrf_token: str, role: Role) -> None:
    _check_form_csrf(request, csrf_token)
    caller.require(role)


@router.post("/admin/users")
def admin_add_user(
    request: Request,
    caller: PageCaller,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    role: Annotated[Role, Form()],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        _admin_action(request, caller, csrf_token, Role.ADMIN)
        if role is Role.OWNER:
            caller.require(Role.OWNER)
        _ww(request).registry.add_user(email, password, role, caller.org_id)
    except (LoginRequired, CsrfFailed):
        raise
    except WattwatchError as exc:
        return _admin(request, caller, 403 if isinstance(exc, AuthError) else 422, error=str(exc))
    return _admin(request, caller, notice=f"Added {email.lower()} as {role}.")


@router.post("/admin/devices")
def admin_add_device(
    request: Request,
    caller: PageCaller,
    name: Annotated[str, Form(min_length=1, max_length=200)],
    kind: Annotated[DeviceKind, Form()] = DeviceKind.MONITOR,
    protocol: Annotated[DeviceProtocol, Form()] = DeviceProtocol.NATIVE,
    site_id: Annotated[str, Form(max_length=20)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        _admin_action(request, caller, csrf_token, Role.ADMIN)
        device, token = _ww(request).registry.create_device(
            caller,
            name=name,
            site_id=int(site_id) if site_id.isdigit() else None,
            kind=kind,
            protocol=protocol,
        )
    except (LoginRequired, CsrfFailed):
        raise
    except WattwatchError as exc:
        return _admin(request, caller, 403 if isinstance(exc, AuthError) else 422, error=str(exc))
    return _admin(request, caller, secret=(device, token))


@router.post("/admin/devices/{device_id}/token")
def admin_rotate_token(
    request: Request,
    device_id: int,
    caller: PageCaller,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        _admin_action(request, caller, csrf_token, Role.ADMIN)
        ww = _ww(request)
        token = ww.registry.rotate_device_token(caller, device_id)
        device = ww.registry.get_device(caller, device_id)
    except (LoginRequired, CsrfFailed):
        raise
    except WattwatchError as exc:
        return _admin(request, caller, 403 if isinstance(exc, AuthError) else 404, error=str(exc))
    return _admin(request, caller, secret=(device, token))


@router.get("/account")
def account_page(request: Request, caller: PageCaller) -> Response:
    return render(request, "account.html", caller)


@router.post("/account/password")
def account_password(
    request: Request,
    caller: PageCaller,
    current_password: Annotated[str, Form(max_length=1024)],
    new_password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    _check_form_csrf(request, csrf_token)
    try:
        _ww(request).registry.change_password(caller, current_password, new_password)
    except WattwatchError as exc:
        return render(request, "account.html", caller, 422, error=str(exc))
    return render(request, "account.html", caller, notice="Password changed.")

"""``sanbos serve``: the SAN boot device as an HTTP service (Starlette + uvicorn).

Three parts, all over one ``core.registry.Registry``:

- ``/v1/...``  the firmware query API: no login, read-only.  ``GET
  /v1/machines/{id}/boot[?type=normal|install|maintenance][&format=json|text|ipxe]``
  gives the ordered boot devices for the machine's current (or the asked)
  boot type; ``/rootvg``, ``/primary``, ``/secondary``, ``/nonessential``
  the other lists; ``/boot.ipxe`` an iPXE script that ``sanboot``\\ s the
  devices in order with failover.
- ``/api/...`` the configuration API (JSON): login with ``POST /api/login``;
  every state-changing call made with the session cookie needs the
  ``X-CSRF-Token`` header the login returned.
- ``/``, ``/login``, ``/machines/...``, ``/admins``, ``/audit``: HTML pages
  (Jinja2, autoescaped) whose forms all carry a CSRF token; they work without
  JavaScript (reordering is up/down buttons, each a small form).

Sessions are Starlette's signed cookies (HttpOnly, SameSite=Strict, Secure
under TLS) whose secret lives in the registry.  Logins are rate-limited per
client address and per user name.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import registry as reg
from core.errors import AmbiguousError, NotFoundError, SanbosError, UsageError
from core.registry import BOOT_TYPES, LISTS, PLAIN_LISTS, Device, Query, Registry

HERE = Path(__file__).resolve().parent
DEFAULT_SAN_URI = "iscsi:127.0.0.1::::iqn.2026-01.io.sanbos:{id}"
MAX_BODY = 256 * 1024
SESSION_COOKIE = "sanbos_session"

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined)


# ----------------------------------------------------------------------------
# helpers


class RateLimiter:
    """At most ``limit`` failures per ``window`` seconds per key; then refuse until they age out."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._fails: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def retry_after(self, keys: list[str]) -> int:
        """Seconds until one more try is allowed (0: allowed now)."""
        now = time.monotonic()
        wait = 0.0
        for k in keys:
            q = self._prune(k, now)
            if len(q) >= self.limit:
                wait = max(wait, self.window - (now - q[len(q) - self.limit]))
        return int(wait) + 1 if wait > 0 else 0

    def fail(self, keys: list[str]) -> None:
        now = time.monotonic()
        for k in keys:
            self._prune(k, now).append(now)
        if len(self._fails) > 10000:          # forget idle keys so memory stays bounded
            for k in [k for k, q in self._fails.items() if not q or now - q[-1] > self.window]:
                del self._fails[k]

    def reset(self, keys: list[str]) -> None:
        for k in keys:
            self._fails.pop(k, None)


class SecurityHeaders:
    """Adds conservative headers to every response (pure ASGI, cheap)."""

    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", b"default-src 'none'; style-src 'self'; img-src 'self'; "
                                     b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        (b"cache-control", b"no-store"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in self.HEADERS if k not in have]
            await send(message)
        await self.app(scope, receive, wrapped)


def _status(e: SanbosError) -> int:
    if isinstance(e, reg.AuthError):
        return 401
    if isinstance(e, NotFoundError):
        return 404
    if isinstance(e, reg.ConflictError):
        return 409
    if isinstance(e, (UsageError, AmbiguousError)):
        return 400
    return 500 if isinstance(e, reg.RegistryError) else 400


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def ipxe_script(q: Query, uri: Callable[[Device], str]) -> str:
    """An iPXE script that tries each device of ``q`` in order: ``sanboot URI || goto next``."""
    lines = ["#!ipxe",
             f"# sanbos SAN boot device: machine {q.machine}, {q.list} list"
             + (f", boot type {q.boot_type}" if q.boot_type else ""),
             f"# {len(q.devices)} device(s), tried in order; one that fails falls through to the next"]
    n = len(q.devices)
    for i, d in enumerate(q.devices, 1):
        nxt = f"sanbos-{i + 1}" if i < n else "sanbos-failed"
        lines += [f":sanbos-{i}",
                  f"echo sanbos: booting {d.id} ({i} of {n})" + (f" boot copy {d.copy}" if d.copy else ""),
                  f"sanboot {uri(d)} || goto {nxt}"]
    lines += [":sanbos-failed",
              f"echo sanbos: no boot device of {q.machine} could be booted ({n} tried)",
              "exit 1", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# the application


def create_app(registry: Registry, *, tls: bool = False, san_uri: str = DEFAULT_SAN_URI,
               login_limit: int = 5, login_window: float = 60.0, session_max_age: int = 8 * 3600) -> Starlette:
    """The Starlette app over ``registry``.  ``tls``: mark cookies Secure."""
    limiter = RateLimiter(login_limit, login_window)

    # -- shared plumbing ----------------------------------------------------

    def disk_facts(dev_id: str) -> dict[str, str]:
        facts = {"id": dev_id, "wwn": dev_id, "serial": "", "address": "", "lun": "0"}
        try:
            disks = registry.known_disks() or []
        except SanbosError:
            disks = []
        for d in disks:
            if getattr(d, "id", d) == dev_id and not isinstance(d, str):
                facts.update(wwn=getattr(d, "wwn", None) or dev_id, serial=getattr(d, "serial", None) or "",
                             address=getattr(d, "address", "") or "")
                tail = facts["address"].rsplit("-lun-", 1)
                if len(tail) == 2 and tail[1].isdigit():
                    facts["lun"] = format(int(tail[1]), "x")
        return facts

    def uri_for(d: Device) -> str:
        facts = disk_facts(d.id)
        facts["copy"] = d.copy or ""
        try:
            return san_uri.format(**facts)
        except (KeyError, IndexError, ValueError):
            return DEFAULT_SAN_URI.format(**facts)

    def admin_of(request: Request) -> str | None:
        s = request.session
        name = s.get("admin")
        if not isinstance(name, str):
            return None
        epoch = registry.admin_epoch(name)
        if epoch is None or epoch != s.get("epoch"):
            s.pop("admin", None)
            s.pop("epoch", None)
            return None
        return name

    def csrf_token(request: Request) -> str:
        tok = request.session.get("csrf")
        if not isinstance(tok, str) or len(tok) < 32:
            tok = secrets.token_urlsafe(32)
            request.session["csrf"] = tok
        return tok

    def csrf_ok(request: Request, given: Any) -> bool:
        want = request.session.get("csrf")
        return isinstance(want, str) and isinstance(given, str) and bool(given) and \
            hmac.compare_digest(want.encode(), given.encode())

    def client_keys(request: Request, name: str) -> list[str]:
        host = request.client.host if request.client else "unknown"
        return [f"ip:{host}", f"user:{name[:64].lower()}"]

    async def login_check(request: Request, name: str, password: str) -> tuple[reg.Admin | None, Response | None]:
        """(admin, None) on success; (None, response) for too many tries; (None, None) for wrong."""
        keys = client_keys(request, name)
        wait = limiter.retry_after(keys)
        if wait:
            return None, _json_error(429, f"too many failed logins; try again in {wait} s",
                                     {"Retry-After": str(wait)})
        try:
            admin = await run_in_threadpool(registry.authenticate, name, password)
        except reg.AuthError:
            limiter.fail(keys)
            return None, None
        limiter.reset(keys)
        return admin, None

    def start_session(request: Request, admin: reg.Admin) -> str:
        request.session.clear()
        request.session.update({"admin": admin.name, "epoch": admin.epoch, "csrf": secrets.token_urlsafe(32)})
        return request.session["csrf"]

    async def write(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await run_in_threadpool(lambda: fn(*args, **kw))

    # -- firmware query API (no login, read-only) --------------------------

    def fw_answer(request: Request, lst: str, fmt: str | None = None) -> Response:
        mid = request.path_params["mid"]
        btype = request.query_params.get("type") or None
        fmt = (fmt or request.query_params.get("format") or "json").lower()
        q = registry.query(mid, lst, btype)
        if fmt == "json":
            return JSONResponse(q.to_dict())
        if fmt == "text":
            return PlainTextResponse(reg.format_bootlist(q.devices))
        if fmt == "ipxe":
            if q.list != "boot":
                raise UsageError(f"an iPXE script exists for the boot list only, not {q.list}")
            return PlainTextResponse(ipxe_script(q, uri_for))
        raise UsageError(f"unknown format {fmt[:20]!r}: json, text or ipxe")

    async def fw_list(request: Request) -> Response:
        return fw_answer(request, request.path_params["lst"])

    async def fw_ipxe(request: Request) -> Response:
        return fw_answer(request, "boot", "ipxe")

    async def fw_machine(request: Request) -> Response:
        m = registry.machine(request.path_params["mid"])
        return JSONResponse({"machine": m.id, "name": m.name, "boot_type": m.boot_type,
                             "lists": [l for l in LISTS]})

    async def fw_health(request: Request) -> Response:
        return JSONResponse({"ok": True, "schema": registry.schema_version()})

    # -- configuration API (JSON, login) ------------------------------------

    async def body_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise UsageError(f"request body larger than {MAX_BODY} bytes")
        if not raw:
            return {}
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            # also keeps cross-site HTML forms (text/plain, urlencoded) away from the JSON API
            raise UsageError("send the request body as JSON (Content-Type: application/json)")
        try:
            data = json.loads(raw)
        except ValueError:
            raise UsageError("the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise UsageError("the request body must be a JSON object")
        return data

    def api(handler: Callable[[Request, str], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Login required; CSRF header required on state-changing methods."""
        async def wrapped(request: Request) -> Response:
            who = admin_of(request)
            if who is None:
                return _json_error(401, "login required: POST /api/login with name and password")
            if request.method not in ("GET", "HEAD") and not csrf_ok(request, request.headers.get("x-csrf-token")):
                return _json_error(403, "missing or wrong X-CSRF-Token header (the token comes from POST /api/login)")
            return await handler(request, who)
        return wrapped

    async def api_login(request: Request) -> Response:
        data = await body_json(request)
        name, pw = data.get("name"), data.get("password")
        if not isinstance(name, str) or not isinstance(pw, str):
            return _json_error(400, "give \"name\" and \"password\"")
        admin, refused = await login_check(request, name, pw)
        if refused is not None:
            return refused
        if admin is None:
            return _json_error(401, "wrong administrator name or password")
        return JSONResponse({"admin": admin.name, "csrf_token": start_session(request, admin)})

    async def api_logout(request: Request) -> Response:
        request.session.clear()
        return JSONResponse({"ok": True})

    async def api_session(request: Request) -> Response:
        who = admin_of(request)
        if who is None:
            return _json_error(401, "not logged in")
        return JSONResponse({"admin": who, "csrf_token": csrf_token(request)})

    async def api_machines(request: Request, who: str) -> Response:
        if request.method == "GET":
            return JSONResponse({"machines": [m.to_dict() for m in registry.list_machines()]})
        data = await body_json(request)
        m = await write(registry.add_machine, data.get("id", ""), data.get("name", "") or "",
                        data.get("boot_type", "normal") or "normal", actor=who)
        return JSONResponse(m.to_dict(), status_code=201)

    async def api_machine(request: Request, who: str) -> Response:
        mid = request.path_params["mid"]
        if request.method == "GET":
            return JSONResponse(registry.machine(mid).to_dict())
        if request.method == "DELETE":
            await write(registry.remove_machine, mid, actor=who)
            return JSONResponse({"deleted": reg.check_machine_id(mid)})
        data = await body_json(request)
        unknown = set(data) - {"name", "boot_type"}
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(sorted(unknown))}: name, boot_type")
        registry.machine(mid)            # 404 first
        if "name" in data:
            await write(registry.rename_machine, mid, data["name"], actor=who)
        if "boot_type" in data:
            await write(registry.set_boot_type, mid, data["boot_type"], actor=who)
        return JSONResponse(registry.machine(mid).to_dict())

    def _mode(request: Request, data: dict[str, Any] | None = None) -> str | None:
        v = (data or {}).get("mode") or request.query_params.get("mode")
        return v or None

    def _list_reply(mid: str, lst: str, mode: str | None, devs: list[Device]) -> JSONResponse:
        lst = reg.check_list(lst)
        d: dict[str, Any] = {"machine": reg.check_machine_id(mid), "list": lst}
        if lst == "boot":
            d["mode"] = mode or registry.machine(mid).boot_type
        d["devices"] = [dict(position=i + 1, **x.to_dict()) for i, x in enumerate(devs)]
        return JSONResponse(d)

    async def api_list(request: Request, who: str) -> Response:
        mid, lst = request.path_params["mid"], request.path_params["lst"]
        if request.method == "GET":
            mode = _mode(request)
            return _list_reply(mid, lst, mode, registry.device_list(mid, lst, mode))
        data = await body_json(request)
        mode = _mode(request, data)
        if "text" in data:
            if not isinstance(data["text"], str):
                raise UsageError("\"text\" must be bootlist text (one device per line)")
            devices: list[Any] = reg.parse_bootlist(data["text"])
        else:
            devices = data.get("devices")
            if not isinstance(devices, list):
                raise UsageError("give \"devices\": [{\"id\": ..., \"copy\": ...}, ...] or \"text\"")
        devs = await write(registry.set_list, mid, lst, devices, mode, actor=who)
        return _list_reply(mid, lst, mode, devs)

    async def api_list_add(request: Request, who: str) -> Response:
        mid, lst = request.path_params["mid"], request.path_params["lst"]
        data = await body_json(request)
        pos = data.get("position")
        if pos is not None and (not isinstance(pos, int) or isinstance(pos, bool)):
            raise UsageError("\"position\" must be a whole number (1 = first)")
        dev = {k: data[k] for k in ("id", "copy", "attrs") if k in data}
        devs = await write(registry.add_device, mid, lst, dev, _mode(request, data), pos, actor=who)
        return _list_reply(mid, lst, _mode(request, data), devs)

    async def api_list_item(request: Request, who: str) -> Response:
        mid, lst, pos = request.path_params["mid"], request.path_params["lst"], request.path_params["pos"]
        if request.method == "DELETE":
            mode = _mode(request)
            devs = await write(registry.remove_device, mid, lst, pos, mode,
                               request.query_params.get("expect") or None, actor=who)
            return _list_reply(mid, lst, mode, devs)
        data = await body_json(request)
        mode = _mode(request, data)
        to = data.get("to")
        if not isinstance(to, (int, str)) or isinstance(to, bool):
            raise UsageError("give \"to\": a position (1 = first), \"up\", \"down\", \"top\" or \"bottom\"")
        devs = await write(registry.move_device, mid, lst, pos, to, mode, data.get("expect"), actor=who)
        return _list_reply(mid, lst, mode, devs)

    async def api_admins(request: Request, who: str) -> Response:
        if request.method == "GET":
            return JSONResponse({"admins": [{"name": a.name, "created": a.created} for a in registry.list_admins()]})
        data = await body_json(request)
        a = await write(registry.add_admin, data.get("name", ""), data.get("password", ""), actor=who)
        return JSONResponse({"name": a.name, "created": a.created}, status_code=201)

    async def api_admin(request: Request, who: str) -> Response:
        name = request.path_params["name"]
        if request.method == "DELETE":
            await write(registry.remove_admin, name, actor=who)
            return JSONResponse({"deleted": name})
        data = await body_json(request)
        await write(registry.set_password, name, data.get("password", ""), actor=who)
        if name == who:      # keep the caller's own session valid after changing its password
            request.session["epoch"] = registry.admin_epoch(name)
        return JSONResponse({"name": name, "password": "changed"})

    async def api_audit(request: Request, who: str) -> Response:
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            raise UsageError("limit must be a number") from None
        return JSONResponse({"audit": [a.to_dict() for a in registry.audit(limit=limit,
                                                                           target=request.query_params.get("target"))]})

    async def api_disks(request: Request, who: str) -> Response:
        disks = registry.known_disks()
        if disks is None:
            return JSONResponse({"checked": False, "disks": []})
        return JSONResponse({"checked": True, "disks": [
            {"id": getattr(d, "id", d), "address": getattr(d, "address", "") if not isinstance(d, str) else "",
             "size": getattr(d, "size", None)} for d in disks]})

    # -- HTML pages --------------------------------------------------------

    def render(request: Request, template: str, status: int = 200, /, **ctx: Any) -> HTMLResponse:
        flashes = request.session.pop("flash", []) if "flash" in request.session else []
        body = _env.get_template(template).render(admin=ctx.pop("admin", None), csrf=csrf_token(request),
                                              flashes=flashes, boot_types=BOOT_TYPES, **ctx)
        return HTMLResponse(body, status_code=status)

    def flash(request: Request, kind: str, text: str) -> None:
        request.session.setdefault("flash", [])
        request.session["flash"] = (request.session["flash"] + [[kind, text]])[-5:]

    def back(path: str) -> RedirectResponse:
        return RedirectResponse(path, status_code=303)

    def page(handler: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Login required (redirect to /login); CSRF form field required on POST."""
        async def wrapped(request: Request) -> Response:
            who = admin_of(request)
            if who is None:
                if request.method == "POST":
                    return render(request, "error.html", 403, title="Not logged in",
                                  message="Log in first: this change was not made.")
                return back("/login?next=" + quote(request.url.path))
            form = None
            if request.method == "POST":
                form = await request.form(max_files=0, max_fields=50)
                if not csrf_ok(request, form.get("csrf_token")):
                    return render(request, "error.html", 403, admin=who, title="Form expired",
                                  message="The form's security token is missing or wrong (CSRF check): "
                                          "nothing was changed. Reload the page and try again.")
            try:
                return await handler(request, who, form)
            except SanbosError as e:
                if request.method == "POST":
                    flash(request, "error", str(e))
                    return back(_safe_back(request))
                return render(request, "error.html", _status(e), admin=who, title="Not found"
                              if isinstance(e, NotFoundError) else "Error", message=str(e))
        return wrapped

    def _safe_back(request: Request) -> str:
        mid = request.path_params.get("mid")
        if mid:
            try:
                if registry.has_machine(mid):
                    return "/machines/" + quote(reg.check_machine_id(mid), safe="")
            except SanbosError:
                pass
        path = request.url.path
        if path.startswith("/admins"):
            return "/admins"
        return "/"

    async def login_page(request: Request) -> Response:
        if request.method == "GET":
            if admin_of(request):
                return back("/")
            return render(request, "login.html", next=_next(request.query_params.get("next")),
                          first_run=registry.admin_count() == 0)
        form = await request.form(max_files=0, max_fields=10)
        nxt = _next(form.get("next"))
        if not csrf_ok(request, form.get("csrf_token")):
            return render(request, "login.html", 403, next=nxt, first_run=False,
                          error="The form's security token is missing or wrong; reload the page and log in again.")
        name, pw = str(form.get("name", "")), str(form.get("password", ""))
        admin, refused = await login_check(request, name, pw)
        if refused is not None:
            return render(request, "login.html", 429, next=nxt, first_run=False,
                          error=f"Too many failed logins; try again in {refused.headers['retry-after']} seconds.")
        if admin is None:
            return render(request, "login.html", 401, next=nxt, first_run=False,
                          error="Wrong administrator name or password.", name=name)
        start_session(request, admin)
        return back(nxt)

    async def logout_page(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=5)
        if csrf_ok(request, form.get("csrf_token")):
            request.session.clear()
        return back("/login")

    async def home(request: Request, who: str, form: Any) -> Response:
        return render(request, "machines.html", admin=who, machines=registry.list_machines())

    async def machine_add(request: Request, who: str, form: Any) -> Response:
        m = await write(registry.add_machine, str(form.get("id", "")), str(form.get("name", "")),
                        str(form.get("boot_type", "normal")), actor=who)
        flash(request, "ok", f"machine {m.id} added")
        return back("/machines/" + quote(m.id, safe=""))

    async def machine_page(request: Request, who: str, form: Any) -> Response:
        m = registry.machine(request.path_params["mid"])
        try:
            disks = registry.known_disks()
        except SanbosError as e:
            disks, err = None, str(e)
        else:
            err = None
        sections = [("boot", t, m.lists["boot"][t]) for t in BOOT_TYPES] + [(l, "", m.lists[l]) for l in PLAIN_LISTS]
        known = [getattr(d, "id", d) for d in disks] if disks is not None else None
        return render(request, "machine.html", admin=who, m=m, sections=sections, known=known,
                      inventory_error=err, q=quote(m.id, safe=""))

    async def machine_post(request: Request, who: str, form: Any) -> Response:
        mid, action = request.path_params["mid"], request.path_params["action"]
        m = registry.machine(mid)
        to = "/machines/" + quote(m.id, safe="")
        if action == "type":
            await write(registry.set_boot_type, mid, str(form.get("boot_type", "")), actor=who)
            flash(request, "ok", f"boot type set to {registry.machine(mid).boot_type}")
        elif action == "name":
            await write(registry.rename_machine, mid, str(form.get("name", "")), actor=who)
            flash(request, "ok", "name changed")
        elif action == "delete":
            if form.get("confirm") != m.id:
                raise UsageError(f"type the machine ID {m.id} to confirm removing it")
            await write(registry.remove_machine, mid, actor=who)
            flash(request, "ok", f"machine {m.id} removed")
            return back("/")
        else:
            raise NotFoundError(f"no action {action[:20]!r}")
        return back(to)

    async def list_post(request: Request, who: str, form: Any) -> Response:
        mid, lst, action = request.path_params["mid"], request.path_params["lst"], request.path_params["action"]
        m = registry.machine(mid)
        lst = reg.check_list(lst)
        mode = str(form.get("mode", "")) or None
        anchor = f"#list-{lst}" + (f"-{mode}" if mode else "")
        to = "/machines/" + quote(m.id, safe="") + anchor
        expect = str(form.get("expect", "")) or None
        if action == "add":
            dev = str(form.get("device", "")).strip()
            words = [dev] + ([f"copy={form.get('copy')}"] if form.get("copy") else [])
            parsed = reg.parse_device_words(words, where="device")
            pos_s = str(form.get("position", "")).strip()
            pos = int(pos_s) if pos_s.isdigit() else None
            devs = await write(registry.add_device, mid, lst, parsed[0] if parsed else Device(""), mode, pos,
                               actor=who)
            flash(request, "ok", f"{lst} list: added {parsed[0].id if parsed else ''} ({len(devs)} devices)")
        elif action == "remove":
            await write(registry.remove_device, mid, lst, _pos(form), mode, expect, actor=who)
            flash(request, "ok", f"{lst} list: removed {expect or ''}".rstrip())
        elif action == "move":
            direction = str(form.get("to", ""))
            if direction not in ("up", "down", "top", "bottom"):
                raise UsageError("move up or down")
            await write(registry.move_device, mid, lst, _pos(form), direction, mode, expect, actor=who)
            flash(request, "ok", f"{lst} list: moved {expect or ''} {direction}")
        elif action == "set":
            devs = await write(registry.set_list, mid, lst, reg.parse_bootlist(str(form.get("text", ""))), mode,
                               actor=who)
            flash(request, "ok", f"{lst} list replaced ({len(devs)} devices)")
        else:
            raise NotFoundError(f"no action {action[:20]!r}")
        return back(to)

    async def admins_page(request: Request, who: str, form: Any) -> Response:
        if request.method == "GET":
            return render(request, "admins.html", admin=who, admins=registry.list_admins())
        action = request.path_params.get("action", "add")
        name = str(form.get("name", ""))
        if action == "add":
            a = await write(registry.add_admin, name, str(form.get("password", "")), actor=who)
            flash(request, "ok", f"administrator {a.name} added")
        elif action == "password":
            await write(registry.set_password, name, str(form.get("password", "")), actor=who)
            if name == who:
                request.session["epoch"] = registry.admin_epoch(name)
            flash(request, "ok", f"password of {name} changed")
        elif action == "delete":
            await write(registry.remove_admin, name, actor=who)
            flash(request, "ok", f"administrator {name} removed")
            if name == who:
                request.session.clear()
                return back("/login")
        else:
            raise NotFoundError(f"no action {action[:20]!r}")
        return back("/admins")

    async def audit_page(request: Request, who: str, form: Any) -> Response:
        return render(request, "audit.html", admin=who, entries=registry.audit(limit=200))

    # -- errors ---------------------------------------------------------------

    def wants_json(request: Request) -> bool:
        p = request.url.path
        return p.startswith("/v1/") or p.startswith("/api/")

    async def on_sanbos_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SanbosError)
        if wants_json(request):
            return _json_error(_status(exc), str(exc))
        return render(request, "error.html", _status(exc), admin=None, title="Error", message=str(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        msg = {404: f"no such page or API call: {request.url.path[:200]}",
               405: f"{request.method} is not allowed on {request.url.path[:200]}"}.get(exc.status_code, exc.detail)
        if wants_json(request):
            return _json_error(exc.status_code, msg)
        return render(request, "error.html", exc.status_code, admin=None, title="Error", message=msg)

    async def on_crash(request: Request, exc: Exception) -> Response:
        # no traceback reaches a client; uvicorn's log has it for the operator
        return _json_error(500, "internal error in the SAN boot device service; see the server log")

    routes = [
        Route("/v1/health", fw_health),
        Route("/v1/machines/{mid}", fw_machine),
        Route("/v1/machines/{mid}/boot.ipxe", fw_ipxe),
        Route("/v1/machines/{mid}/{lst}", fw_list),
        Route("/api/login", api_login, methods=["POST"]),
        Route("/api/logout", api_logout, methods=["POST"]),
        Route("/api/session", api_session),
        Route("/api/machines", api(api_machines), methods=["GET", "POST"]),
        Route("/api/machines/{mid}", api(api_machine), methods=["GET", "PATCH", "DELETE"]),
        Route("/api/machines/{mid}/lists/{lst}", api(api_list), methods=["GET", "PUT"]),
        Route("/api/machines/{mid}/lists/{lst}/devices", api(api_list_add), methods=["POST"]),
        Route("/api/machines/{mid}/lists/{lst}/devices/{pos:int}", api(api_list_item), methods=["DELETE"]),
        Route("/api/machines/{mid}/lists/{lst}/devices/{pos:int}/move", api(api_list_item), methods=["POST"]),
        Route("/api/admins", api(api_admins), methods=["GET", "POST"]),
        Route("/api/admins/{name}", api(api_admin), methods=["DELETE"]),
        Route("/api/admins/{name}/password", api(api_admin), methods=["PUT"]),
        Route("/api/audit", api(api_audit)),
        Route("/api/disks", api(api_disks)),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout_page, methods=["POST"]),
        Route("/", page(home)),
        Route("/machines", page(machine_add), methods=["POST"]),
        Route("/machines/{mid}", page(machine_page)),
        Route("/machines/{mid}/lists/{lst}/{action}", page(list_post), methods=["POST"]),
        Route("/machines/{mid}/{action}", page(machine_post), methods=["POST"]),
        Route("/admins", page(admins_page), methods=["GET"]),
        Route("/admins/{action}", page(admins_page), methods=["POST"]),
        Route("/audit", page(audit_page)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=registry.secret(), session_cookie=SESSION_COOKIE,
                   max_age=session_max_age, same_site="strict", https_only=tls),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={SanbosError: on_sanbos_error, HTTPException: on_http_error,
                                        Exception: on_crash})
    app.state.registry = registry
    app.state.limiter = limiter
    return app


def _pos(form: Any) -> int:
    s = str(form.get("position", ""))
    if not s.isdigit():
        raise UsageError("bad position")
    return int(s)


def _next(value: Any) -> str:
    """Only local paths are followed after login (no open redirect)."""
    v = str(value or "/")
    if not v.startswith("/") or v.startswith("//") or "\\" in v or any(ord(c) < 32 for c in v):
        return "/"
    return v

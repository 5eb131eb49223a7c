"""``sanbos serve``: run the SAN boot device web service (Starlette on uvicorn).

Loopback by default.  ``--port 0`` picks a free port; the first line on
stdout says where the service listens (tests read it).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from core.errors import UsageError

from .machine import open_registry, registry_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the SAN boot device service: firmware query API and web configuration")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8470, help="TCP port (0: any free port; default 8470)")
    p.add_argument("--certfile", help="TLS certificate (PEM); with --keyfile serves HTTPS and marks cookies Secure")
    p.add_argument("--keyfile", help="TLS private key (PEM)")
    p.add_argument("--san-uri", default=None, metavar="TEMPLATE",
                   help="iPXE sanboot URI per disk, with {id} {wwn} {serial} {address} {lun} {copy} "
                        "(default: iscsi:127.0.0.1::::iqn.2026-01.io.sanbos:{id})")
    p.add_argument("--access-log", action="store_true", help="log every request")
    registry_args(p)
    p.set_defaults(func=_serve)


def _check_tls(certfile: str, keyfile: str) -> None:
    """Load the certificate and key once before listening: a bad one is a one-line error, not a traceback."""
    import ssl

    from core.tools import input_file
    input_file(certfile, "TLS certificate")
    input_file(keyfile, "TLS key")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as e:
        raise UsageError(f"TLS certificate {certfile} with key {keyfile}: cannot be loaded "
                         f"({getattr(e, 'reason', None) or e})") from None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from console.web.app import DEFAULT_SAN_URI, create_app

    if bool(args.certfile) != bool(args.keyfile):
        raise UsageError("TLS needs both --certfile and --keyfile")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"bad port {args.port}")
    tls = bool(args.certfile)
    if tls:
        _check_tls(args.certfile, args.keyfile)
    registry = open_registry(args)
    app = create_app(registry, tls=tls, san_uri=args.san_uri or DEFAULT_SAN_URI)

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # proto set: asyncio then sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    sock.listen(512)
    sock.set_inheritable(True)
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"sanbos: SAN boot device on {scheme}://{shown}:{port}/ (registry {registry.path})", flush=True)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not tls:
        print("sanbos: warning: listening beyond loopback without TLS; passwords and session cookies "
              "cross the network in clear text (give --certfile/--keyfile)", file=sys.stderr, flush=True)
    if registry.admin_count() == 0:
        print("sanbos: no administrator yet: create one with 'sanbos admin add NAME' to use the web pages",
              file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=args.access_log, proxy_headers=False,
                            server_header=False, ssl_certfile=args.certfile, ssl_keyfile=args.keyfile,
                            timeout_graceful_shutdown=5, backlog=512)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        registry.close()
    return 0

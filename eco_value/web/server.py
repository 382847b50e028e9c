"""Starting the console: bind-address policy, configuration from the command line, uvicorn."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from ..errors import EcoValueError
from .app import WebConfig, create_app, load_users_or_refuse

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_host(host: str, public: bool) -> str:
    """The address to bind; a non-loopback one only with ``--public`` (the console then serves the network)."""
    if not host:
        raise EcoValueError("--host is empty; give 127.0.0.1 (this machine only) or an address with --public")
    if not is_loopback(host) and not public:
        raise EcoValueError(f"--host {host} would serve the console to other machines; it binds to 127.0.0.1 by default. "
                            "Add --public if you mean it (and put it behind HTTPS), or use --host 127.0.0.1")
    return host


def read_trusted_key(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        key = Path(path).read_text(encoding="ascii").strip()
        bytes.fromhex(key)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EcoValueError(f"--trusted-key {path}: not a readable hex public key ({exc}); "
                            "write one with `eco-value keys export --out FILE`") from None
    return key


def serve(cfg: WebConfig, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, public: bool = False) -> None:
    import uvicorn

    host = check_bind_host(host, public)
    load_users_or_refuse(cfg.users_file)
    if cfg.catalogs_dir is not None and not Path(cfg.catalogs_dir).is_dir():
        raise EcoValueError(f"--catalogs {cfg.catalogs_dir}: not a folder; give the folder holding the regions' "
                            "catalog.toml files (e.g. the output of `eco-value pilot-data`)")
    if public:
        cfg.secure_cookie = True   # over the network the console must sit behind HTTPS
    app = create_app(cfg)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)

"""Debian's nginx in front of the service, configured from docs/nginx.conf itself, for
tests/serve/test_proxy.py and benchmarks/proxy.py (which imports it as `tests.nginx_proxy`: benchmarks
may import anything, nothing imports benchmarks). Standard library only, so both can import it.

Only the documented file's placeholders change: the `listen` address, the two certificate paths and the
upstream's port. Each must appear exactly once, so a doc edit that moves one fails here loudly rather
than testing some other config. nginx runs in the foreground as one process, with its pid, logs and
temporary files in a work folder. It works as root or not and touches nothing under /etc or /var.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC_CONF = ROOT / "docs" / "nginx.conf"
# the documented placeholders, each replaced by `site_config`
LISTEN, UPSTREAM = "listen 443 ssl;", "server 127.0.0.1:8080;"
CERT, KEY = "/etc/ssl/certs/sen-search.crt", "/etc/ssl/private/sen-search.key"
READY_TIMEOUT = 30.0  # seconds for nginx to open its port (it needs well under one)


def nginx_binary() -> str | None:
    """The nginx executable (PATH, else Debian's /usr/sbin, which is not on a plain user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None


def self_signed(folder: Path, name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway certificate and key for `name` (an IP address), made with the openssl CLI: (cert, key).
    The certificate is its own CA, so a client may verify against it."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "proxy.crt", folder / "proxy.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName=IP:{name}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def site_config(upstream_port: int, listen: str, cert: Path, key: Path, text: str | None = None) -> str:
    """docs/nginx.conf (or `text`) with its placeholders replaced; ValueError if one is not there once."""
    text = DOC_CONF.read_text() if text is None else text
    for old, new in ((LISTEN, f"listen {listen} ssl;"), (UPSTREAM, f"server 127.0.0.1:{upstream_port};"),
                     (CERT, str(cert)), (KEY, str(key))):
        if text.count(old) != 1:
            raise ValueError(f"{DOC_CONF.name}: expected {old!r} exactly once, found it {text.count(old)} times")
        text = text.replace(old, new)
    return text


def main_config(work: Path, site: Path) -> str:
    """The top-level config around the documented one: one foreground process, every path under `work`."""
    temp = "\n".join(f"    {kind}_temp_path {work / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                         "scgi"))
    return (f"daemon off;\nmaster_process off;\npid {work / 'nginx.pid'};\nerror_log {work / 'error.log'} warn;\n"
            f"events {{ worker_connections 1024; }}\n"
            f"http {{\n    access_log {work / 'access.log'};\n{temp}\n    include {site};\n}}\n")


def free_port() -> int:
    """A loopback port free now (nginx cannot print the port it got, so one is picked for it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def nginx_proxy(upstream: str, work: Path, cert: Path | None = None, key: Path | None = None,
                ready_timeout: float = READY_TIMEOUT):
    """Yields "https://127.0.0.1:PORT": nginx with docs/nginx.conf in front of the service at `upstream`
    ("http://127.0.0.1:PORT"). It is stopped on exit: SIGTERM, then SIGKILL after 10 s.

    Raises:
        RuntimeError: no nginx binary, or nginx did not start (with its error log).
    """
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("no nginx binary (Debian: apt-get install nginx-light)")
    work.mkdir(parents=True, exist_ok=True)
    if cert is None or key is None:
        cert, key = self_signed(work)
    upstream_port = int(upstream.rsplit(":", 1)[1].rstrip("/"))
    for attempt in range(3):  # the free port can be taken between finding it and nginx binding it
        port = free_port()
        site, top = work / "site.conf", work / "nginx.conf"
        site.write_text(site_config(upstream_port, f"127.0.0.1:{port}", cert, key))
        top.write_text(main_config(work, site))
        proc = subprocess.Popen([binary, "-p", str(work), "-c", str(top)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
        try:
            if _wait_listening(proc, port, ready_timeout):
                yield f"https://127.0.0.1:{port}"
                return
        finally:
            _stop(proc)
        log = _tail(work / "error.log")
        if "Address already in use" not in log or attempt == 2:
            raise RuntimeError(f"nginx did not start (exit code {proc.returncode}):\n{log}")


def _wait_listening(proc: subprocess.Popen, port: int, timeout: float) -> bool:
    """Whether nginx accepts connections on `port` within `timeout` s (False once it has exited)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path.name})"

"""`--address` that leads nowhere: one line and exit 2 within the connect timeout, never Ray's traceback
or a wait of minutes, and nothing written (the engine is checked, no gallery is made)."""

import socket

import pytest

from helpers import run_cli

pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nobody listens there


@pytest.mark.parametrize("address, says", [
    ("nowhere.invalid:1234", "cannot reach nowhere.invalid:1234"),
    ("127.0.0.1:{port}", "cannot reach 127.0.0.1:{port}"),
    ("ray://127.0.0.1:{port}", "cannot reach 127.0.0.1:{port}"),
    ("not an address", "write auto, local[:N], host:port or ray://host:port"),
])
def test_an_address_nobody_answers_is_one_line(engine, tmp_path, address, says):
    import importlib.util

    port = _free_port()
    address, says = address.format(port=port), says.format(port=port)
    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        says = "needs Ray's client"  # the cluster extra alone lacks ray[client]: refused before connecting
    video = tmp_path / "cam.avi"
    video.write_bytes(b"")
    # the 120 s bound is the subprocess's whole life (imports included), far above the 5 s connect timeout
    r = run_cli("ingest", "--address", address, "--engine", str(engine), "--gallery", str(tmp_path / "root"),
                str(video), module="sen_infer.cluster", timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --address"), r.stderr[-2000:]
    assert says in lines[0]
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("option, value", [("--task-cpus", "nan"), ("--embedder-cpus", "-1"),
                                           ("--embedder-cpus", "inf")])
def test_cpu_options_must_be_finite_and_not_negative(engine, tmp_path, option, value):
    """A CPU count of nan or inf would reach Ray's scheduler; refused by the parser, before anything."""
    r = run_cli("ingest", "--engine", str(engine), "--gallery", str(tmp_path / "root"), option, value,
                str(tmp_path / "cam.avi"), module="sen_infer.cluster", timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and option in lines[0] and "CPUs" in lines[0], r.stderr[-2000:]
    assert not (tmp_path / "root").exists()

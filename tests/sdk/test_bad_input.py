"""Every bad input the CLI can meet, as a table: each case runs `python -m sen_infer` as a subprocess and
asserts the exit code, one line naming the offending thing, no traceback, no crash signal, and that a
gallery that existed before has the same rows after.

Cases that are not errors (a FIFO or a non-UTF-8 name among the inputs, a damaged row) exit 0 and say
what was skipped, on one line each.
"""

import json
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from helpers import ROOT, run_cli as run  # noqa: E402
BAD = os.fsdecode(b"caf\xe9")  # Latin-1 bytes in a UTF-8 world: a str with a surrogate escape


def _env(tmp: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore",
            "SEN_INFER_CACHE": str(tmp / "cache")}


def run_cli(args, tmp: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return run(*args, env=_env(tmp), timeout=timeout, text=False)


def rows(gallery: Path) -> int:
    with sqlite3.connect(gallery / "gallery.sqlite") as conn:
        return conn.execute("SELECT count(*) FROM crops").fetchone()[0]


@pytest.fixture(scope="module")
def base(engine, synth_learn, video, tmp_path_factory):
    """(engine dir, gallery with 6 crops, a few images, the synthetic cameras' folder) shared read-only by the
    cases; cases copy what they damage."""
    from sen_infer import Retriever

    work = tmp_path_factory.mktemp("bad_input")
    images = sorted((synth_learn / "imgs").rglob("*.jpg"))[:8]
    gallery = work / "gallery"
    r = Retriever(engine, gallery=gallery)
    assert r.gallery.add_images([str(p) for p in images[:6]], camera="door").added == 6
    r.gallery.close()
    return engine, gallery, images, video


def copy_engine(base, tmp: Path) -> Path:
    dst = tmp / "engine"
    shutil.copytree(base[0], dst, ignore=shutil.ignore_patterns("gallery"))
    return dst


def copy_gallery(base, tmp: Path) -> Path:
    dst = tmp / "gallery"
    shutil.copytree(base[1], dst)
    return dst


def edit_manifest(engine: Path, **changes) -> None:
    m = json.loads((engine / "manifest.json").read_text())
    m.update(changes)
    (engine / "manifest.json").write_text(json.dumps(m))


def shuffle_weights(path: Path) -> None:
    """Permute the largest weight tensor of an ONNX graph: still a valid model, now a wrong one."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = numpy_helper.to_array(init).copy()
    np.random.default_rng(0).shuffle(w.reshape(-1))
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(path))


def damage_page(db: Path) -> None:
    """Overwrite one page of the rows table with garbage (a bad disk sector). A page of an index can be
    garbled into answers that still parse, which no reader notices without `info --check`; a page of
    the table is what every read of the rows goes through. SQLite's dbstat table says where it lies."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        try:
            leaves = [n for (n,) in conn.execute("SELECT pageno FROM dbstat WHERE name='crops' AND pagetype='leaf' "
                                                 "ORDER BY pageno")]
        except sqlite3.OperationalError:  # an SQLite built without dbstat: the middle of the file
            leaves = []
    assert pages >= 3
    target = leaves[len(leaves) // 2] - 1 if leaves else pages // 2  # dbstat counts pages from 1
    with open(db, "r+b") as f:
        f.seek(page * target)
        f.write(np.random.default_rng(1).integers(0, 256, page, dtype=np.uint8).tobytes())


def damage_blob(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        key = conn.execute("SELECT min(id) FROM crops").fetchone()[0]
        conn.execute("UPDATE crops SET embedding = ? WHERE id = ?", (b"\x00" * 7, key))
    return key


def make_read_only(path: Path) -> None:
    """chmod for ordinary users; root ignores permissions, so there the file is made immutable."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return
    r = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot make a file read-only for root here (chattr: {r.stderr.decode().strip()})")


def undo_read_only(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o644)


@dataclass
class Case:
    id: str
    setup: Callable  # (base, tmp) -> (argv, gallery dir whose rows must not change, or None)
    needle: str  # what the one line must say (the offending thing)
    rc: int = 2


def _q(engine, gallery, *extra):
    return ["query", "--engine", engine, "--gallery", gallery, *extra]


def _ingest(engine, gallery, *extra):
    return ["ingest", "--engine", engine, "--gallery", gallery, "--quiet", *extra]


def shared(argv_fn, gallery_kept=True):
    def setup(base, tmp):
        g = copy_gallery(base, tmp)
        return argv_fn(base, tmp, g), (g if gallery_kept else None)
    return setup


def damaged_engine(damage, argv_extra=(), command="query"):
    def setup(base, tmp):
        e, g = copy_engine(base, tmp), copy_gallery(base, tmp)
        damage(e)
        argv = _q(e, g, "a man in red", *argv_extra) if command == "query" else \
            _ingest(e, g, *argv_extra, str(base[2][6]))
        return argv, g
    return setup


def _truncate(e):
    data = (e / "image_encoder.int8.onnx").read_bytes()
    (e / "image_encoder.int8.onnx").write_bytes(data[: len(data) // 2])


def _swap_towers(e, fix_manifest=False):
    a, b = e / "image_encoder.int8.onnx", e / "text_encoder.int8.onnx"
    tmp = e / "swap.tmp"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    if fix_manifest:  # a forger who also rewrote the hashes: the signature check still catches it
        m = json.loads((e / "manifest.json").read_text())
        m["files"][a.name], m["files"][b.name] = m["files"][b.name], m["files"][a.name]
        (e / "manifest.json").write_text(json.dumps(m))


def _fifo(base, tmp, g):
    fifo = tmp / "x.jpg"
    os.mkfifo(fifo)
    return _ingest(base[0], g, str(fifo), str(base[2][6]))


def _non_utf8_in_folder(base, tmp, g):
    folder = tmp / "in"
    folder.mkdir()
    shutil.copy(base[2][6], folder / "a.jpg")
    shutil.copy(base[2][7], os.fsencode(folder) + b"/caf\xe9.jpg")
    return _ingest(base[0], g, str(folder))


def _mot(content):
    def argv(base, tmp, g):
        det = tmp / "det.txt"
        if content is not None:
            det.write_bytes(content)
        video = tmp / "v.mp4"
        video.write_bytes(b"")  # never opened: the detections file is checked first
        return _ingest(base[0], g, "--detector", f"mot:{det}", str(video))
    return argv


CASES = [
    # query text and filters
    Case("query-non-utf8-with-sheet", shared(lambda b, t, g: _q(b[0], g, f"a man in {BAD}", "--sheet", t / "s.jpg")),
         "query text is not valid UTF-8"),
    Case("sheet-path-non-utf8", shared(lambda b, t, g: _q(b[0], g, "a man", "--sheet", str(t / f"{BAD}.jpg"))),
         "--sheet path is not valid UTF-8"),
    Case("sheet-no-extension", shared(lambda b, t, g: _q(b[0], g, "a man", "--sheet", t / "hits")), "--sheet"),
    Case("sheet-unknown-extension", shared(lambda b, t, g: _q(b[0], g, "a man", "--sheet", t / "hits.xyz")),
         "hits.xyz"),
    Case("sheet-is-a-directory", shared(lambda b, t, g: _q(b[0], g, "a man", "--sheet", t)), "is a directory"),
    Case("sheet-folder-missing", shared(lambda b, t, g: _q(b[0], g, "a man", "--sheet", t / "no" / "s.jpg")),
         "does not exist"),
    Case("camera-non-utf8", shared(lambda b, t, g: _q(b[0], g, "a man", "--camera", BAD)), "camera name"),
    Case("since-infinite", shared(lambda b, t, g: _q(b[0], g, "a man", "--since", "inf")), "--since"),
    Case("until-nan", shared(lambda b, t, g: _q(b[0], g, "a man", "--until", "nan")), "--until"),
    Case("since-after-until", shared(lambda b, t, g: _q(b[0], g, "a man", "--since", "5", "--until", "1")),
         "since (5.0) is after until"),
    Case("k-zero", shared(lambda b, t, g: _q(b[0], g, "a man", "-k", "0")), "-k"),
    Case("empty-text", shared(lambda b, t, g: _q(b[0], g, "  ")), "query text is empty"),
    Case("query-image-missing", shared(lambda b, t, g: _q(b[0], g, "--image", t / "none.jpg")), "none.jpg"),
    Case("unknown-backend", shared(lambda b, t, g: _q(b[0], g, "a man", "--backend", "gpu9")), "gpu9"),
    # galleries
    Case("query-mistyped-gallery", lambda b, t: (_q(b[0], t / "galery", "a man"), None), "no gallery at"),
    Case("info-mistyped-gallery", lambda b, t: (["info", "--engine", b[0], "--gallery", t / "galery"], None),
         "no gallery at"),
    Case("damaged-sqlite-page", lambda b, t: (lambda g: (damage_page(g / "gallery.sqlite"),
                                                         (["info", "--engine", b[0], "--gallery", g], None))[1])(
        copy_gallery(b, t)), "gallery.sqlite"),
    Case("damaged-embedding-blob", lambda b, t: (lambda g: (damage_blob(g / "gallery.sqlite"),
                                                            (_q(b[0], g, "a man", "--json"), g))[1])(
        copy_gallery(b, t)), "damaged embedding", rc=0),
    Case("read-only-gallery-ingest", lambda b, t: (lambda g: (make_read_only(g / "gallery.sqlite"),
                                                              (_ingest(b[0], g, str(b[2][6])), g))[1])(
        copy_gallery(b, t)), "read-only"),
    Case("gallery-path-non-utf8", lambda b, t: (_q(b[0], str(t / BAD), "a man"), None), "--gallery path"),
    # ingest arguments and inputs
    Case("stride-zero", shared(lambda b, t, g: _ingest(b[0], g, "--stride", "0", str(b[2][6]))), "--stride"),
    Case("start-time-inf", shared(lambda b, t, g: _ingest(b[0], g, "--start-time", "inf", str(b[2][6]))),
         "--start-time"),
    Case("timestamp-nan", shared(lambda b, t, g: _ingest(b[0], g, "--timestamp", "nan", str(b[2][6]))),
         "--timestamp"),
    Case("unknown-detector", shared(lambda b, t, g: _ingest(b[0], g, "--detector", "yolo", str(b[2][6]))),
         "unknown detector"),
    Case("mot-file-missing", shared(_mot(None)), "det.txt does not exist"),
    Case("mot-file-garbage", shared(_mot(b"\x00\xffnot,mot\nat all\n")), "det.txt is not MOT rows"),
    Case("mot-file-too-few-columns", shared(_mot(b"1,2,3\n")), "need at least frame,id,x,y,w,h"),
    Case("fifo-named-jpg", shared(_fifo), "x.jpg: not a regular file", rc=1),  # the other input is stored: partial
    # an mp4 cut before its index: FFmpeg's own "moov atom not found" line is silenced, ours names the file
    Case("mp4-without-its-index", shared(lambda b, t, g: (t / "cut.mp4").write_bytes(
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(4096)) and _ingest(b[0], g, str(t / "cut.mp4"))),
        "cut.mp4: cannot open video", rc=1),
    Case("non-utf8-name-in-folder", shared(_non_utf8_in_folder), "not valid UTF-8", rc=1),
    # the tail of an mp4 (its head cut off): decoded to nothing, said, and exit 1
    Case("mp4-tail-only", shared(lambda b, t, g: (t / "tail.mp4").write_bytes(
        (b[3] / "cam1.mp4").read_bytes()[(b[3] / "cam1.mp4").stat().st_size // 2:]) and _ingest(
        b[0], g, "--detector", "mog2", str(t / "tail.mp4"))), "the head of the file is missing", rc=1),
    Case("ingest-mistyped-path", shared(lambda b, t, g: _ingest(b[0], g, str(b[2][6]), str(t / "cam1.mpp4"))),
         "no such file or folder: "),
    Case("ingest-nothing-ingestible", lambda b, t: (lambda d: (d.mkdir(), (d / "notes.txt").write_text("x"),
                                                             (_ingest(b[0], t / "newg", str(d)), None))[2])(
        t / "in"), "nothing to ingest"),
    Case("start-time-1e300", shared(lambda b, t, g: _ingest(b[0], g, "--start-time", "1e300", str(b[2][6]))),
         "between 1970 and 2199"),
    Case("start-time-in-milliseconds", shared(lambda b, t, g: _ingest(b[0], g, "--start-time", "1764950400000",
                                                                      str(b[2][6]))), "milliseconds"),
    Case("query-text-and-image", shared(lambda b, t, g: _q(b[0], g, "a man", "--image", b[2][6])), "not both"),
    # engine dirs
    Case("engine-missing", lambda b, t: (_q(t / "nowhere", t / "g", "a man"), None), "does not exist"),
    Case("manifest-invalid-json", damaged_engine(lambda e: (e / "manifest.json").write_text("{")), "invalid JSON"),
    Case("manifest-100000-nested-brackets", damaged_engine(lambda e: (e / "manifest.json").write_text(
        "[" * 100_000 + "]" * 100_000)), "nested too deeply"),
    Case("timeline-person-2-to-the-80", shared(lambda b, t, g: ["timeline", "--engine", b[0], "--gallery", g,
                                                                str(2 ** 80)]), "person must be an integer id"),
    Case("query-min-quality-above-1", shared(lambda b, t, g: _q(b[0], g, "a man", "--min-quality", "1.5")),
         "--min-quality"),
    Case("manifest-image-size-zero", damaged_engine(lambda e: edit_manifest(e, image_size=[0, 64])), "image_size"),
    Case("manifest-image-size-changed", damaged_engine(lambda e: edit_manifest(e, image_size=[256, 128])),
         "image_encoder.int8.onnx"),
    Case("manifest-context-zero", damaged_engine(lambda e: edit_manifest(e, context_length=0)), "context_length"),
    Case("manifest-context-5000", damaged_engine(lambda e: edit_manifest(e, context_length=5000)),
         "context_length"),
    Case("manifest-context-100", damaged_engine(lambda e: edit_manifest(e, context_length=100)),
         "context_length 100"),
    Case("manifest-embed-dim-changed", damaged_engine(lambda e: edit_manifest(e, embed_dim=512)), "embed_dim"),
    Case("manifest-eot-changed", damaged_engine(lambda e: edit_manifest(e, eot_id=7)), "sot/eot"),
    Case("truncated-onnx", damaged_engine(_truncate), "image_encoder.int8.onnx"),
    Case("truncated-onnx-skip-verify", damaged_engine(_truncate, ("--skip-verify",)), "cannot load"),
    Case("swapped-towers", damaged_engine(_swap_towers), "image_encoder.int8.onnx: sha256"),
    Case("swapped-towers-rehashed", damaged_engine(lambda e: _swap_towers(e, True)),
         "image_encoder.int8.onnx: is not an image tower"),
    Case("shuffled-weights-fp32", damaged_engine(lambda e: shuffle_weights(e / "image_encoder.onnx"),
                                                 ("--backend", "onnx-cpu"), command="ingest"),
         "image_encoder.onnx: sha256"),
    Case("shuffled-weights-int8", damaged_engine(lambda e: shuffle_weights(e / "image_encoder.int8.onnx"),
                                                 command="ingest"), "image_encoder.int8.onnx: sha256"),
    Case("tokenizer-damaged", damaged_engine(lambda e: (e / "tokenizer.json").write_text("{}")),
         "tokenizer.json: sha256"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, base, tmp_path):
    argv, gallery = case.setup(base, tmp_path)
    before = rows(gallery) if gallery is not None else None
    try:
        r = run_cli(argv, tmp_path)
    finally:
        if gallery is not None:
            undo_read_only(gallery / "gallery.sqlite")
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode >= 0, f"killed by signal {-r.returncode}: {err[-2000:]}"  # a segfault is -11
    assert "Traceback" not in err, err[-3000:]
    assert r.returncode == case.rc, (r.returncode, err[-2000:])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if case.rc == 2:  # refused: one line, nothing done
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert case.needle in lines[0], lines[0]
    else:  # done, with what could not be: skipped and warned lines only (exit 1 when an input was not stored)
        assert any(case.needle in ln for ln in lines), err
        assert all(ln.startswith(("warning: ", "skipped ")) for ln in lines), err
    if gallery is not None:
        after = rows(gallery)
        assert after >= before  # nothing stored is ever lost...
        if case.rc == 2:
            assert after == before  # ...and a refused command adds nothing either
    for created in ("galery", "newg"):
        assert not (tmp_path / created).exists()  # reading never creates a gallery


def test_damaged_row_is_reported_and_the_rest_still_served(base, tmp_path):
    g = copy_gallery(base, tmp_path)
    key = damage_blob(g / "gallery.sqlite")
    r = run_cli(_q(base[0], g, "a person", "-k", "10", "--json", "--all-crops"), tmp_path)
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)["hits"]
    assert len(hits) == 5 and key not in [h["key"] for h in hits]
    assert f"keys {key}" in r.stderr.decode()
    r = run_cli(["info", "--engine", base[0], "--gallery", g, "--json"], tmp_path)
    info = json.loads(r.stdout)
    assert info["rows"] == 6 and info["damaged_rows"] == 1  # the row is still there: evidence is kept


def test_fifo_and_bad_names_are_counted_and_the_rest_ingested(base, tmp_path):
    g = copy_gallery(base, tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "cam.mp4")
    shutil.copy(base[2][6], folder / "a.jpg")
    shutil.copy(base[2][7], os.fsencode(folder) + b"/caf\xe9.jpg")
    r = run_cli(_ingest(base[0], g, "--json", str(folder)), tmp_path)
    assert r.returncode == 1, r.stderr  # stored what it could; exit 1 says some input was not
    out = json.loads(r.stdout)
    assert out["added"] == 1 and len(out["unreadable"]) == 2
    assert sorted(out["reasons"].values()) == ["file name is not valid UTF-8 (rename it)",
                                               "not a regular file (FIFO, device, socket or broken link)"]
    assert rows(g) == 7


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(base, tmp_path):
    """`query --json | head -c 10`: the reader has what it wanted; no BrokenPipeError, no traceback."""
    env = _env(tmp_path)
    cmd = [os.fsencode(os.sys.executable), b"-m", b"sen_infer", *map(os.fsencode, _q(base[0], base[1], "a man",
                                                                                        "--json", "-k", "6"))]
    producer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    head = producer.stdout.read(10)  # then close our end before the producer has written everything
    producer.stdout.close()
    err = producer.stderr.read().decode("utf-8", "replace")
    rc = producer.wait(timeout=120)
    assert len(head) == 10
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert rc in (0, 141), (rc, err)  # 0 when all of it fit in the pipe before we closed it


def test_ctrl_c_during_ingest_is_one_line_exit_130_and_keeps_what_was_committed(engine, video, tmp_path):
    """SIGINT while a long video is being ingested: one line, exit 130; the chunks committed stay, and the
    same command then finishes the video."""
    import signal
    import time

    from videos import looped_avi

    # 1,600 frames (~1 min of work here): the interrupt lands long before the end, whatever the machine's load
    long = looped_avi(video, tmp_path / "long.avi", 20)
    gallery = tmp_path / "g"
    argv = [os.fsencode(os.sys.executable), b"-m", b"sen_infer", b"ingest", b"--engine", os.fsencode(engine),
            b"--gallery", os.fsencode(gallery), b"--chunk-seconds", b"2", b"--detector", b"mog2", os.fsencode(long)]
    # SIGINT back to its default in the child: a test run started in the background (`make test &`, a CI
    # step) has it ignored, the child would inherit that and never see Ctrl-C (the ingest then ran to its
    # end, or past the wait below on a loaded machine)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path), cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120  # bounds the wait for the first commit, not a speed claim
    while time.monotonic() < deadline and proc.poll() is None:
        db = gallery / "gallery.sqlite"
        if db.is_file():
            try:
                # a plain connection (it only reads): a read-only one can fail to open a WAL database
                # while its writer is between files, which once kept this loop from seeing the commits
                with closing(sqlite3.connect(db, timeout=60)) as conn:
                    if conn.execute("SELECT count(*) FROM crops").fetchone()[0] and conn.execute(
                            "SELECT count(*) FROM sources WHERE resume_frame IS NOT NULL").fetchone()[0]:
                        break  # rows are committed and the video is not done: interrupt now
            except sqlite3.Error:
                pass
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the video was ingested before it could be interrupted (nothing to test on this machine)")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = err.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.strip() and "frame" not in ln]  # progress bars aside
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("interrupted"), err[-2000:]
    kept = rows(gallery)
    assert kept > 0
    again = run_cli(["ingest", "--engine", engine, "--gallery", gallery, "--quiet", "--chunk-seconds", "2",
                     "--detector", "mog2", long], tmp_path, timeout=1200)
    assert again.returncode == 0, again.stderr.decode("utf-8", "replace")[-2000:]
    assert rows(gallery) >= kept


@pytest.mark.parametrize("damage", ["zero-bytes", "deleted"])
@pytest.mark.parametrize("command", ["query", "info", "ingest"])
def test_a_gallery_whose_database_is_empty_or_gone_is_refused_not_rebuilt(base, tmp_path, damage, command):
    """gallery.sqlite emptied (a full disk, a bad copy) or deleted while the index and crops remain: every
    command refuses in one line naming it, and writes nothing (no new schema over the stale parts)."""
    g = copy_gallery(base, tmp_path)
    (g / "gallery.sqlite").unlink()
    if damage == "zero-bytes":
        (g / "gallery.sqlite").write_bytes(b"")
    argv = {"query": _q(base[0], g, "a man"), "info": ["info", "--engine", base[0], "--gallery", g, "--check"],
            "ingest": _ingest(base[0], g, str(base[2][6]))}[command]
    r = run_cli(argv, tmp_path)
    err = r.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "gallery.sqlite" in lines[0], err
    assert ("empty" if damage == "zero-bytes" else "missing") in lines[0]
    db = g / "gallery.sqlite"
    assert (db.stat().st_size == 0) if damage == "zero-bytes" else not db.exists()


@pytest.mark.parametrize("command", ["query", "info"])
def test_a_zero_byte_database_alone_is_not_a_gallery_to_readers(base, tmp_path, command):
    """An empty gallery.sqlite with nothing beside it (a touched file, a copy that failed at once): a reader
    says there is no gallery and leaves the file as it was (it never writes a schema into it)."""
    g = tmp_path / "g"
    g.mkdir()
    (g / "gallery.sqlite").write_bytes(b"")
    argv = {"query": _q(base[0], g, "a man"), "info": ["info", "--engine", base[0], "--gallery", g, "--check"]}[command]
    r = run_cli(argv, tmp_path)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 2 and err.startswith("error: no gallery at") and "0 bytes" in err, err
    assert (g / "gallery.sqlite").stat().st_size == 0 and sorted(p.name for p in g.iterdir()) == ["gallery.sqlite"]


def test_footage_with_nobody_in_it_says_the_detector_saw_no_one(base, tmp_path):
    """A video read to the end with no one detected is not an error (exit 0, nothing stored), but "added 0"
    alone does not say why: the CLI names the detector and the usual fix on stderr."""
    import cv2

    video = tmp_path / "empty corridor.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for _ in range(30):  # a static grey scene: background subtraction finds no foreground in it
        writer.write(np.full((120, 160, 3), 128, np.uint8))
    writer.release()
    g = copy_gallery(base, tmp_path)
    r = run_cli(_ingest(base[0], g, "--detector", "mog2", str(video)), tmp_path)
    assert r.returncode == 0, r.stderr
    stderr = r.stderr.decode()
    assert "no person was detected in 1 video with --detector mog2" in stderr
    assert "--detector mog2-split" in stderr  # the fix for synthetic footage is named
    assert rows(g) == 6  # nothing added, nothing lost
    again = run_cli(_ingest(base[0], g, "--detector", "mog2", str(tmp_path / "none.mp4")), tmp_path)
    assert b"no person was detected" not in again.stderr  # an unreadable file is not "nobody seen"

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# the tests' own helper modules (helpers.py, serving.py, videos.py) import from any test folder
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the tests' videos are SynthPEDES cartoons, which the neural detector (trained on photographs) does not
# see: their default detector is background subtraction, as a deployment sets its own with $SEN_DETECTOR.
# Tests of the neural detector name it; tests of the default itself clear this.
os.environ.setdefault("SEN_DETECTOR", "mog2")
# Ray runs its workers at nice 15 by default: beside any ordinary CPU load (a busy CI machine, or the two
# `yes` processes of the load runs) they got ~4 % of a core here, and the cluster tests' bounds, derived for the
# work, do not hold. The tests' clusters (here and in subprocesses, which inherit it) run them at nice 0.
os.environ.setdefault("RAY_worker_niceness", "0")
# the SDK's sha256 cache lives in a per-run folder, not in the user's ~/.cache (subprocesses inherit it)
os.environ.setdefault("SEN_INFER_CACHE", tempfile.mkdtemp(prefix="sen_infer_cache_"))


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory):
    """A small SynthPEDES dataset shared by the tests that only read it."""
    from sen_train.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth_small")
    generate(SynthConfig(ids=24, seed=3), out, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def synth_learn(tmp_path_factory):
    """A SynthPEDES set big enough for a from-scratch model to learn from in seconds."""
    from sen_train.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth_learn")
    generate(SynthConfig(ids=160, seed=7), out, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run(synth_learn, tmp_path_factory):
    """The tiny preset trained on synth_learn: (result dict, run dir)."""
    from sen_train.config import load_config
    from sen_train.train import train

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    return train(load_config("tiny"), synth_learn, run, progress=False), run


@pytest.fixture(scope="session")
def engine(tiny_run, tmp_path_factory) -> Path:
    """The engine dir every SDK, service and benchmark test uses: the trained tiny checkpoint exported with
    fp32 + int8 towers. Read-only: a test that damages an engine copies it first."""
    from export.onnx import export_engine_dir

    out = tmp_path_factory.mktemp("engines") / "tiny"
    export_engine_dir(tiny_run[1] / "best", out, int8=True, log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def engine_fp32(tiny_run, tmp_path_factory) -> Path:
    """The same trained tiny model with fp32 towers only, for checks that must not depend on int8."""
    from export.onnx import export_engine_dir

    out = tmp_path_factory.mktemp("engines") / "tiny_fp32"
    export_engine_dir(tiny_run[1] / "best", out, int8=False, log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def cli():
    """The one CLI runner: `cli("query", "--engine", ...)` runs `python -m sen_infer ...` (see helpers.run_cli)."""
    from helpers import run_cli

    return run_cli


@pytest.fixture(scope="module")
def video(synth_learn, tmp_path_factory):
    """Two synthetic cameras (8 s at 10 fps) of SynthPEDES test identities, made once per test module."""
    from sen_train.data.synth_video import VideoConfig, generate, identities_from_dataset

    out = tmp_path_factory.mktemp("video")
    people = identities_from_dataset(synth_learn, "test")
    generate(VideoConfig(cameras=2, seconds=8, seed=5, fps=10), out, people, progress=False)
    return out

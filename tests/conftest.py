import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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

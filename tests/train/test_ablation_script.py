"""scripts/ablation.py's analysis modes on real checkpoints: seed averaging, paired bootstrap, TIR probe."""

import json

from helpers import ROOT, run_cli  # noqa: E402
SCRIPT = str(ROOT / "scripts" / "ablation.py")


def _run(*args):
    return run_cli(SCRIPT, *args, module=None, timeout=None)


def test_combine_averages_seed_runs(tmp_path):
    rows = {"d. SEN (full)": {"R1": 40.0, "R5": 70.0, "R10": 80.0, "mAP": 30.0, "mINP": 20.0}}
    for seed, r1 in ((0, 40.0), (1, 30.0)):
        (tmp_path / f"s{seed}").mkdir()
        table = {k: {**v, "R1": r1, "seed": seed} for k, v in rows.items()}
        (tmp_path / f"s{seed}" / "ablation.json").write_text(json.dumps(table))
    r = _run("--combine", str(tmp_path / "s0"), str(tmp_path / "s1"))
    assert r.returncode == 0, r.stderr
    assert "| d. SEN (full) | 35.00 | 70.00 | 80.00 | 30.00 | 20.00 | 40.0 / 30.0 |" in r.stdout
    r = _run("--combine", str(tmp_path / "missing"))
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_significance_and_tir_probe_on_a_trained_checkpoint(tiny_run, synth_learn, tmp_path):
    run_dir = tmp_path / "ablation"
    (run_dir / "d").mkdir(parents=True)
    (run_dir / "d" / "best").symlink_to(tiny_run[1] / "best", target_is_directory=True)
    r = _run("--significance", str(run_dir), "--data", str(synth_learn))
    assert r.returncode == 0, r.stderr
    row = [line for line in r.stdout.splitlines() if line.startswith("| d. SEN (full)")][0]
    assert f"| {tiny_run[0]['test']['R1']:.2f} | (reference) |" in row  # same metrics as training reported
    r = _run("--tir-probe", str(tiny_run[1] / "best"), "--data", str(synth_learn))
    assert r.returncode == 0, r.stderr
    values = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in r.stdout.splitlines()
              if line.startswith("| ") and line.split("|")[2].strip()[:1].isdigit()}
    assert set(values) == {"matched", "other identity", "empty caption"}
    assert all(0 < v < 10 for v in values.values())

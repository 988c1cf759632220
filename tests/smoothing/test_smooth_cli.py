"""``verifier smooth certify|predict`` through click's CliRunner."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import require_shared
from verifier.cli import main


@pytest.fixture
def files(build, tmp_path):
    model = build.save(build.mlp(seed=1), tmp_path / "mlp.onnx")
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.random((4,) + build.SHAPE).astype(np.float32), y=np.array([0, 1, 2, 0]))
    return model, str(data), tmp_path


def _run(*args):
    return CliRunner().invoke(main, ["smooth", *map(str, args)])


def _tsv(text):
    lines = [line for line in text.splitlines() if line and "\t" in line]
    return [line.split("\t") for line in lines]


def test_certify_writes_tsv_and_summary(files):
    model, data, tmp = files
    out = tmp / "res.tsv"
    result = _run("certify", model, data, "--sigma", 0.5, "--n0", 20, "--n", 500,
                  "--seed", 3, "--out", out, "--radii", "0.1,0.2")
    assert result.exit_code == 0, result.output
    rows = _tsv(out.read_text())
    assert rows[0] == ["idx", "label", "predict", "radius", "correct", "time"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    for row in rows[1:]:
        predict, radius, correct = int(row[2]), float(row[3]), int(row[4])
        assert (predict == -1) == (radius == 0.0) or radius == 0.0
        assert correct == int(predict == int(row[1]))
    assert "| r=0.1 | r=0.2 |" in result.stdout and "clean acc" in result.stdout
    assert "CPUExecutionProvider" in result.stderr


def test_certify_is_reproducible_with_a_seed(files):
    model, data, _ = files
    args = ("certify", model, data, "--sigma", 0.5, "--n0", 20, "--n", 300, "--seed", 9)
    first, second = _run(*args), _run(*args)

    def without_time(text):
        return [row[:5] for row in _tsv(text)]

    assert first.exit_code == 0 and without_time(first.stdout) == without_time(second.stdout)


def test_certify_tsv_on_stdout_when_no_out(files):
    model, data, _ = files
    result = _run("certify", model, data, "--sigma", 0.5, "--n", 100, "--limit", 2)
    assert result.exit_code == 0
    assert _tsv(result.stdout)[0][0] == "idx" and len(_tsv(result.stdout)) == 3
    assert "clean acc" in result.stderr and "clean acc" not in result.stdout


def test_predict(files):
    model, data, _ = files
    result = _run("predict", model, data, "--sigma", 0.5, "--n", 200, "--skip", 2)
    assert result.exit_code == 0, result.output
    rows = _tsv(result.stdout)
    assert rows[0] == ["idx", "label", "predict", "correct", "time"]
    assert [r[0] for r in rows[1:]] == ["0", "2"]
    assert "smoothed prediction" in result.stderr


def test_sample_size_warnings(files):
    model, data, _ = files
    result = _run("certify", model, data, "--sigma", 0.5, "--n", 5, "--limit", 1)
    assert result.exit_code == 0
    assert "warning: n = 5 is too small to ever certify" in result.stderr
    result = _run("certify", model, data, "--sigma", 0.25, "--n", 100, "--limit", 1)
    assert "warning: no certificate can reach radius 0.5, 1" in result.stderr


@pytest.mark.parametrize("content,message", [
    (b"not an npz", "not an .npz archive"),
    (None, "does not exist"),
])
def test_bad_data_exits_2(files, content, message):
    model, _, tmp = files
    path = tmp / "bad.npz"
    if content is not None:
        path.write_bytes(content)
    result = _run("certify", model, path, "--sigma", 0.5, "--n", 100)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0]


def test_data_that_does_not_fit_the_model_exits_2(files):
    model, _, tmp = files
    path = tmp / "wide.npz"
    np.savez(path, x=np.zeros((2, 17)), y=np.zeros(2, int))
    result = _run("predict", model, path, "--sigma", 0.5)
    assert result.exit_code == 2 and "17 values" in result.stderr


def test_bad_model_and_usage_exit_2(files):
    _, data, tmp = files
    model = tmp / "bad.onnx"
    model.write_bytes(b"junk")
    assert _run("certify", model, data, "--sigma", 0.5).exit_code == 2
    model, data, _ = files
    assert _run("certify", model, data).exit_code == 2  # --sigma is required
    assert _run("certify", model, data, "--sigma", -1).exit_code == 2
    assert _run("certify", model, data, "--sigma", 1, "--radii", "a,b").exit_code == 2


def test_help_states_the_units():
    result = _run("certify", "--help")
    assert result.exit_code == 0 and "input units" in result.output
    assert "certify" in _run("--help").output


def test_shared_digits_model_on_its_test_set():
    model = require_shared("models", "digits_mlp_rs_sigma0.25.onnx")
    data = require_shared("datasets", "digits_test.npz")
    result = _run("certify", model, data, "--sigma", 0.25, "--n", 1000, "--limit", 40,
                  "--radii", "0.25")
    assert result.exit_code == 0, result.output
    rows = _tsv(result.stdout)[1:]
    assert np.mean([int(r[4]) for r in rows]) >= 0.85  # published clean accuracy: 0.974


class _Stream:
    def __init__(self, tty):
        self.text, self.tty = "", tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise():
    from verifier.cli.smooth_cmd import Progress

    tty, plain = _Stream(True), _Stream(False)
    bars, lines = Progress(20, tty), Progress(20, plain)
    for _ in range(20):
        bars.update("x correct")
        lines.update("x correct")
    assert tty.text.count("\r[") == 20 and "[" + "#" * Progress.WIDTH + "] 20/20" in tty.text
    assert "\r" not in plain.text and plain.text.count("\n") == 10  # every 10%
    assert plain.text.splitlines()[-1].startswith("progress: 20/20 inputs")

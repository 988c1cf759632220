"""Smoothing never certifies NaN, fails early on bad paths and never over-claims (audit B1.4,
B2.6, B2.7, B3.5 of ../shared/audits/user-audit-7a3fb1e.md)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from verifier.cli import main
from verifier.errors import DataError, VerifierError
from verifier.smoothing import (Certificate, SmoothedClassifier, certify_row, load_dataset,
                                pa_lower_bound)


def sqrt_model(ir_version):
    """logits = [0, sum(sqrt(x))]: class 1 on every finite sample, NaN when some x_i < 0."""
    w = np.stack([np.zeros(4), np.ones(4)], axis=1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Sqrt", ["x"], ["s"]), helper.make_node("MatMul", ["s", "W"], ["y"])],
        "sqrt", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = ir_version
    return model


def _run(*args):
    return CliRunner().invoke(main, ["smooth", *map(str, args)])


@pytest.fixture
def files(build, tmp_path):
    model = build.save(build.mlp(seed=1), tmp_path / "mlp.onnx")
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((3,) + build.SHAPE).astype(np.float32), y=np.array([0, 1, 2]))
    return model, str(data), tmp_path


def test_nan_logits_are_abstaining_votes_never_class_0(build):
    classifier = SmoothedClassifier(sqrt_model(build.IR_VERSION), 0.5, batch=256)
    x = np.array([0.02, 0.01, 1.0, 1.0], np.float32)  # NaN on about 75% of the samples
    cert = classifier.certify(x, n0=100, n=2000, alpha=0.001)
    assert cert.prediction is None and cert.radius == 0.0
    assert cert.abstain_votes > 1000
    prediction = classifier.predict(x, n=2000, alpha=0.001)
    assert prediction.prediction is None and prediction.abstain_votes > 1000
    tally = classifier.tally(x, 0, 500)
    assert tally.sum() == 500 and tally[0] == 0 and tally[-1] > 250


def test_a_few_nan_logits_count_in_n_for_no_class(build):
    classifier = SmoothedClassifier(sqrt_model(build.IR_VERSION), 0.5, batch=256)
    x = np.ones(4, np.float32)  # some coordinate < 0 on about 9% of the samples
    cert = classifier.certify(x, n0=100, n=4000, alpha=0.001)
    assert cert.prediction == 1 and 0 < cert.n_a < 4000 and cert.abstain_votes > 100
    assert cert.pa_lower == pa_lower_bound(cert.n_a, 4000, 0.001)
    assert classifier.counts(x, 100, 4000)[1] == cert.n_a


def test_api_refuses_a_nan_input(build):
    classifier = SmoothedClassifier(build.constant(label=0), 0.25)
    with pytest.raises(VerifierError, match="NaN or infinite"):
        classifier.certify(np.full(build.SHAPE, np.nan, np.float32), n=1000)
    with pytest.raises(DataError, match="NaN or infinite"):
        classifier.predict(np.full(build.SHAPE, 1e300), n=100)


@pytest.mark.parametrize("scale", ["nan", "1e300"])
def test_csv_scale_giving_non_finite_inputs_is_an_error(tmp_path, scale):
    path = tmp_path / "d.csv"
    path.write_text("0," + ",".join(["7"] * 16) + "\n")
    with pytest.raises(DataError, match="not all finite"):
        load_dataset(path, (16,), num_classes=2, scale=float(scale))


@pytest.mark.parametrize("sigma", ["nan", "inf", "1e400"])
def test_non_finite_sigma_is_a_usage_error(files, sigma):
    model, data, _ = files
    result = _run("certify", model, data, "--sigma", sigma, "--n", 100)
    assert result.exit_code == 2 and "finite" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_non_finite_radii_and_scale_are_usage_errors(files):
    model, data, _ = files
    assert _run("certify", model, data, "--sigma", 0.5, "--radii", "0.5,nan").exit_code == 2
    assert _run("certify", model, data, "--sigma", 0.5, "--scale", "inf").exit_code == 2
    for command in ("certify", "predict"):
        result = _run(command, model, data, "--sigma", 0.5, "--alpha", "nan")
        assert result.exit_code == 2 and "finite" in result.output


def _out_cases(tmp):
    plain = tmp / "plain_file"
    plain.write_text("x")
    return {"missing directory": (tmp / "nodir" / "r.tsv", "does not exist"),
            "a directory": (tmp, "directory"),
            "under a file": (plain / "r.tsv", "does not exist")}


@pytest.mark.parametrize("case", ["missing directory", "a directory", "under a file"])
def test_bad_out_path_is_reported_before_the_model_is_loaded(files, case):
    _, data, tmp = files
    junk = tmp / "junk.onnx"
    junk.write_bytes(b"not a model")  # loading it would be a different error
    out, message = _out_cases(tmp)[case]
    result = _run("certify", junk, data, "--sigma", 0.5, "--out", out)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "junk.onnx" not in result.stderr and "Traceback" not in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_read_only_out_directory_is_reported(files):
    model, data, tmp = files
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = _run("certify", model, data, "--sigma", 0.5, "--out", locked / "r.tsv")
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 2 and "cannot write" in result.stderr
    assert not (locked / "r.tsv").exists()


def test_tsv_radius_is_rounded_down():
    cert = Certificate(3, 0.37509, 0.9, 99, 100, 100, 0.25, 0.001, 0.1, label=3)
    radius = certify_row(0, cert).split("\t")[3]
    assert radius == "0.3750" and float(radius) <= cert.radius


def test_scale_warning_names_the_likely_scale(tmp_path):
    path = tmp_path / "digits.csv"
    path.write_text("".join(f"{k % 2}," + ",".join(str((k + i) % 17) for i in range(16)) + "\n"
                            for k in range(4)))
    data = load_dataset(path, (16,), num_classes=2)  # default scale 1/255
    assert len(data.warnings) == 1 and "did you mean --scale 1/16?" in data.warnings[0]
    assert "0..0.0627 after scaling" in data.warnings[0]
    assert load_dataset(path, (16,), num_classes=2, scale=1 / 16).warnings == ()
    npz = tmp_path / "u8.npz"
    np.savez(npz, x=np.arange(32, dtype=np.uint8).reshape(2, 16) * 8, y=np.array([0, 1]))
    warned = load_dataset(npz, (16,), num_classes=2).warnings
    assert len(warned) == 1 and "divide x by 255" in warned[0] and "uint8" in warned[0]


def test_empty_data_set_is_an_error(files):
    model, _, tmp = files
    empty = tmp / "empty.npz"
    np.savez(empty, x=np.zeros((0, 16), np.float32), y=np.zeros(0, np.int64))
    result = _run("certify", model, empty, "--sigma", 0.5, "--n", 100)
    assert result.exit_code == 2 and "empty" in result.stderr


def test_radius_warning_comes_only_after_the_inputs_are_validated(files):
    model, _, tmp = files
    result = _run("certify", model, tmp / "missing.npz", "--sigma", 0.25, "--n", 100)
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert "warning:" not in result.stderr


def test_radius_zero_has_no_column_of_its_own(files):
    model, data, _ = files
    result = _run("certify", model, data, "--sigma", 0.5, "--n", 200, "--radii", "0,0.1")
    assert result.exit_code == 0, result.output
    head = next(line for line in result.stderr.splitlines() if "clean acc" in line)
    assert "r=0 |" not in head and "r=0.1" in head


def test_curve_csv_beside_the_tsv(files):
    model, data, tmp = files
    out = tmp / "res.tsv"
    result = _run("certify", model, data, "--sigma", 0.5, "--n", 500, "--out", out)
    assert result.exit_code == 0, result.output
    lines = (tmp / "res.curve.csv").read_text().splitlines()
    assert lines[0] == "radius,certified_accuracy,certified,inputs"
    rows = [line.split(",") for line in lines[1:]]
    tsv = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    for radius, fraction, count, inputs in rows:
        # the TSV radii are rounded down, so they never certify more than the curve says
        from_tsv = sum(int(t[4]) and float(t[3]) >= float(radius) for t in tsv)
        assert from_tsv <= int(count) and int(inputs) == 3
        assert float(fraction) == pytest.approx(int(count) / 3)
    counts = [int(r[2]) for r in rows]
    assert counts == sorted(counts, reverse=True) and float(rows[0][0]) == 0.0
    explicit = tmp / "curve.csv"
    assert _run("certify", model, data, "--sigma", 0.5, "--n", 500, "--limit", 1,
                "--curve", explicit).exit_code == 0
    assert explicit.read_text().startswith("radius,certified_accuracy")


def test_curve_rows_from_in_memory_radii():
    from verifier.smoothing import curve_rows

    certs = [Certificate(0, r, 0.9, 1, 1, 1, 0.5, 0.001, 0.0, label=0) for r in (0.02, 0.0101)]
    rows = curve_rows(certs + [Certificate(None, 0.0, 0.0, 0, 1, 1, 0.5, 0.001, 0.0, label=0)],
                      0.5)
    assert rows[1:] == ["0.0,0.666667,2,3", "0.005,0.666667,2,3", "0.01,0.666667,2,3",
                        "0.015,0.333333,1,3", "0.02,0.333333,1,3"]


def test_abstaining_votes_in_the_statistics():
    from verifier.smoothing import certify_from_counts, predict_from_counts

    assert certify_from_counts([3, 40], [10, 400], 0.5, 0.001, abstain=(57, 590))[0] is None
    label, n_a, lower, _ = certify_from_counts([3, 90], [10, 900], 0.5, 0.001, abstain=(7, 90))
    assert label == 1 and n_a == 900 and lower == pa_lower_bound(900, 1000, 0.001)
    assert predict_from_counts([0, 10], 0.001, abstain=990)[0] is None
    assert predict_from_counts([0, 990], 0.001, abstain=10)[0] == 1


def test_cli_prints_the_scale_warning(files):
    model, _, tmp = files
    path = tmp / "digits.csv"
    path.write_text("".join(f"{k % 3}," + ",".join(str((k + i) % 17) for i in range(16)) + "\n"
                            for k in range(3)))
    result = _run("certify", model, path, "--sigma", 0.5, "--n", 100)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "did you mean --scale 1/16?" in result.stderr

"""DATA for smoothing: npz, CSV (with scale and layout) and VNN-LIB robustness properties."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import require_shared
from verifier.errors import DataError, InputFileError, PropertyError
from verifier.smoothing import load_dataset, property_point


def test_npz_rows_are_reshaped_to_the_model_input(tmp_path):
    path = tmp_path / "d.npz"
    x = np.arange(2 * 16, dtype=np.float64).reshape(2, 16)
    np.savez(path, x=x, y=np.array([1, 0]))
    data = load_dataset(path, (1, 4, 4), num_classes=2)
    assert data.x.shape == (2, 1, 4, 4) and data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x.reshape(2, -1), x)
    assert data.y.tolist() == [1, 0] and len(data) == 2


@pytest.mark.parametrize("arrays,message", [
    ({"x": np.zeros((2, 16))}, "needs arrays 'x' and 'y'"),
    ({"x": np.zeros((2, 15)), "y": np.zeros(2, int)}, "15 values"),
    ({"x": np.zeros((2, 16)), "y": np.zeros(3, int)}, "expected 2 labels"),
    ({"x": np.zeros((2, 16)), "y": np.array([0, 7])}, "label 7"),
    ({"x": np.zeros((2, 16)), "y": np.array([0.5, 1])}, "whole numbers"),
    ({"x": np.full((2, 16), np.nan), "y": np.array([0, 1])}, "NaN"),
])
def test_npz_errors(tmp_path, arrays, message):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(path, (16,), num_classes=3)


def test_csv_hwc_layout_and_scale(tmp_path):
    # one 2x2 RGB image stored pixel-interleaved: (r,c) -> R, G, B
    image = np.arange(12).reshape(2, 2, 3)  # H, W, C
    path = tmp_path / "d.csv"
    path.write_text("5," + ",".join(str(v) for v in image.reshape(-1)) + "\n")
    data = load_dataset(path, (3, 2, 2), scale=0.5)
    np.testing.assert_array_equal(data.x[0], image.transpose(2, 0, 1) * 0.5)
    chw = load_dataset(path, (3, 2, 2), scale=1.0, layout="chw")
    np.testing.assert_array_equal(chw.x[0].reshape(-1), image.reshape(-1))
    assert data.y.tolist() == [5]


def test_csv_default_scale_is_one_over_255(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,255,0,51,102\n0,0,0,0,0\n")
    data = load_dataset(path, (4,))
    np.testing.assert_allclose(data.x[0], [1.0, 0.0, 0.2, 0.4], rtol=1e-6)


@pytest.mark.parametrize("text,message", [
    ("1,2,3\n1,2\n", ":2: 2 columns"),
    ("1,2,3\n1,2,x\n", ":2: not a comma-separated"),
    ("", "no data rows"),
])
def test_csv_errors(tmp_path, text, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_dataset(path, (2,))


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(InputFileError):
        load_dataset(tmp_path / "none.npz", (2,))
    other = tmp_path / "d.txt"
    other.write_text("1,2")
    with pytest.raises(DataError, match="unknown data format"):
        load_dataset(other, (2,))


def _write_property(path, lower, upper, unsafe):
    lines = [f"(declare-const X_{i} Real)" for i in range(len(lower))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(3)]
    for i, (lo, hi) in enumerate(zip(lower, upper)):
        lines += [f"(assert (>= X_{i} {lo}))", f"(assert (<= X_{i} {hi}))"]
    lines.append(unsafe)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_vnnlib_robustness_property_gives_centre_and_label(tmp_path):
    path = _write_property(tmp_path / "p.vnnlib", [0.0, 0.2, -1.0], [0.2, 0.4, 1.0],
                           "(assert (or (and (>= Y_0 Y_2)) (and (>= Y_1 Y_2))))")
    point = property_point(path)
    np.testing.assert_allclose(point.x, [0.1, 0.3, 0.0])
    assert point.label == 2
    assert point.region_radius == pytest.approx(np.linalg.norm([0.1, 0.1, 1.0]))
    data = load_dataset(path, (3,), num_classes=3)
    assert data.y.tolist() == [2] and data.x.shape == (1, 3)


def test_vnnlib_that_is_not_a_robustness_property(tmp_path):
    path = _write_property(tmp_path / "p.vnnlib", [0, 0, 0], [1, 1, 1], "(assert (>= Y_0 3.5))")
    with pytest.raises(DataError, match="not a classification-robustness property"):
        load_dataset(path, (3,))
    broken = tmp_path / "b.vnnlib"
    broken.write_text("(declare-const X_0 Real)\n(assert (<= X_0")
    with pytest.raises(PropertyError):
        load_dataset(broken, (1,))


def test_shared_mnist_fc_property_and_csv():
    prop = require_shared("vnncomp", "mnist_fc", "vnnlib", "prop_0_0.03.vnnlib")
    point = property_point(prop)
    assert len(point.x) == 784 and 0 <= point.label < 10
    csv = require_shared("datasets", "mnist_test.csv")
    npz = np.load(require_shared("datasets", "mnist_test100.npz"))
    data = load_dataset(csv, (784, 1))
    np.testing.assert_allclose(data.x.reshape(100, -1), npz["x"].reshape(100, -1), atol=1e-7)
    np.testing.assert_array_equal(data.y, npz["y"])


def test_shared_cifar_csv_is_read_as_hwc():
    csv = require_shared("datasets", "cifar10_test.csv")
    npz = np.load(require_shared("datasets", "cifar10_test100.npz"))
    data = load_dataset(csv, (3, 32, 32))
    np.testing.assert_allclose(data.x, npz["x"], atol=1e-7)
    np.testing.assert_array_equal(data.y, npz["y"])

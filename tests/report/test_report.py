"""``verifier report`` and ``verifier gen-specs`` on a linear model with known answers.

The model's logits are [w.x, -w.x] with w = ones(16)/16, so the margin of label
0 is 2 mean(x) and of label 1 is -2 mean(x). Over the L-infinity ball of radius
eps (no clip) the worst margin is 2(|mean(x)| - eps |w|_1) = 2(|mean| - eps), over
the L2 ball 2(|mean| - eps |w|_2) = 2(|mean| - eps/4): every sound method is exact
on a linear model (the Lipschitz radius too: 2|mean| / ||w_0 - w_1||, the
dual norm of the ball's) and PGD reaches the worst point.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import require_shared
from tests.smoothing.conftest import SHAPE, linear_pair, save
from verifier.cli import main
from verifier.report import SoundnessError, robustness_report, to_json
from verifier.smoothing import Dataset

MEANS = [0.3, -0.2, 0.05, 0.1]   # image k has constant value MEANS[k]
LABELS = [0, 1, 0, 1]            # image 3 is misclassified
ROBUST_LINF = {0.1: [True, True, False, False], 0.25: [True, False, False, False]}


@pytest.fixture
def tiny(tmp_path):
    model = save(linear_pair(np.full(16, 1 / 16)), tmp_path / "linear.onnx")
    x = np.stack([np.full(SHAPE, m, np.float32) for m in MEANS])
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=np.array(LABELS))
    return model, Dataset(x, np.array(LABELS), str(data)), str(data), tmp_path


def test_every_method_gives_the_known_answers(tiny):
    model, dataset, _, _ = tiny
    report = robustness_report(model, dataset, (0.1, 0.25),
                               methods=("ibp", "naive-ibp", "crown", "crown+ibp", "alpha-crown",
                                        "lipschitz", "pgd"))
    assert report.clean_accuracy == 0.75
    for eps, robust in ROBUST_LINF.items():
        expected = sum(robust) / 4
        for method in report.methods:
            column = report.column(method, eps)
            assert column.accuracy == expected, (method, eps)
            assert column.status[3] == "wrong"
        assert report.column("pgd", eps).count("broken") == 3 - sum(robust)
    rows = to_json(report)["rows"]
    assert [r["crown"] for r in rows] == [0.5, 0.25]


def test_complete_alone_decides_every_image(tiny):
    model, dataset, _, _ = tiny
    report = robustness_report(model, dataset, (0.1, 0.25), methods=("complete",),
                               timeout_per_image=20)
    for eps, robust in ROBUST_LINF.items():
        status = report.column("complete", eps).status
        assert status == tuple("certified" if r else "broken" for r in robust[:3]) + ("wrong",)


def test_l2_balls_use_the_dual_norm(tiny):
    model, dataset, _, _ = tiny
    # robust iff |mean| > eps / 4: at eps = 0.5 images 0 and 1 (0.3, 0.2 > 0.125), not 2 (0.05)
    report = robustness_report(model, dataset, (0.5, 1.0), norm="l2",
                               methods=("crown", "alpha-crown", "lipschitz", "pgd", "complete"))
    assert report.methods == ("crown", "alpha-crown", "lipschitz", "pgd")  # complete needs boxes
    for method in report.methods:
        assert report.column(method, 0.5).status[:3] == ("certified", "certified",
                                                         "not certified") \
            or report.column(method, 0.5).status[:3] == ("robust", "robust", "broken")
        assert report.column(method, 1.0).accuracy == 0.25  # 0.3 > 0.25 only


def test_soundness_check_fires_on_a_broken_bound(tiny, monkeypatch):
    import verifier.report.run as run

    model, dataset, data, _ = tiny
    monkeypatch.setattr(run, "certify", lambda graph, images, *a: np.ones(len(images), bool))
    with pytest.raises(SoundnessError, match="image 2 .*crown certified, pgd broke it"):
        robustness_report(model, dataset, (0.1,), methods=("crown", "pgd"))
    result = CliRunner().invoke(main, ["report", model, data, "--eps", "0.1",
                                       "--methods", "crown,pgd"])
    assert result.exit_code == 2 and "soundness check failed" in result.stderr
    assert "| eps |" not in result.stdout


def test_cli_writes_tables_csv_json_and_says_how_to_get_plots(tiny, monkeypatch):
    import builtins

    model, _, data, tmp = tiny
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    from verifier.runtime import cuda_status

    cuda_status.cache_clear()  # the CUDA probe runs inside CliRunner: its prints must not reach --json
    out = tmp / "rep"
    result = CliRunner().invoke(main, ["report", model, data, "--eps", "0.1,0.25",
                                       "--methods", "ibp,crown,pgd", "--out", out, "--json",
                                       "--smoothing-sigma", "0.5", "--n", "200"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [row["ibp"] for row in summary["rows"]] == [0.5, 0.25]
    assert summary["smoothing"]["sigma"] == 0.5
    assert "verifier[plot]" in result.stderr
    lines = (out / "per_image.csv").read_text().splitlines()
    assert lines[0] == "image,label,prediction,eps,method,result,seconds"
    assert len(lines) == 1 + 4 * 3 * 2 + 4
    assert (out / "summary.csv").read_text().startswith("eps,clean,ibp,crown,pgd")
    assert "| eps | clean | ibp | crown | pgd |" in (out / "summary.md").read_text()


def test_cli_errors_exit_2_before_any_work(tiny):
    model, _, data, tmp = tiny
    runner = CliRunner()
    for args, message in [(["--eps", "nan"], "finite"), (["--clip", "1,0"], "LO < HI"),
                          (["--methods", "ibp,magic"], "magic"),
                          (["--out", tmp / "no" / "dir"], "does not exist"),
                          (["--clip", "0,0.2"], "outside the clip range")]:
        result = runner.invoke(main, ["report", model, data, *map(str, args)])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_generated_specs_read_back_and_verify_as_the_report_answered(tiny):
    from verifier.spec import load_property, robustness_label
    from verifier.verify import Options, verify

    model, dataset, data, tmp = tiny
    out = tmp / "specs"
    result = CliRunner().invoke(main, ["gen-specs", model, data, "--eps", "0.1", "--out", out])
    assert result.exit_code == 0, result.output
    assert "skipped 1 misclassified" in result.stderr
    rows = (out / "instances.csv").read_text().splitlines()
    assert len(rows) == 3 and all(r.startswith("onnx/linear.onnx,vnnlib/") for r in rows)
    report = robustness_report(model, dataset, (0.1,), methods=("crown", "pgd"))
    for k, row in enumerate(rows):
        prop = load_property(out / row.split(",")[1])
        assert robustness_label(prop) == LABELS[k]
        np.testing.assert_allclose(prop.cases[0].region.center, np.full(16, MEANS[k]),
                                   atol=1e-7)
        answer = verify(out / "onnx" / "linear.onnx", prop, Options(timeout=20)).verdict.value
        assert answer == ("unsat" if report.column("crown", 0.1).status[k] == "certified"
                          else "sat")
        assert (answer == "sat") == (report.column("pgd", 0.1).status[k] == "broken")


def test_shared_digits_reproduce_the_published_table():
    """IBP, naive IBP and CROWN on the 500 digits within 0.01 of ../shared/models/README.md."""
    model = require_shared("models", "digits_mlp_plain.onnx")
    data = require_shared("datasets", "digits_test.npz")
    from verifier.smoothing import load_dataset

    dataset = load_dataset(data, (1, 8, 8), num_classes=10)
    report = robustness_report(model, dataset, (0.01, 0.02, 0.05, 0.1), clip=(0.0, 1.0),
                               methods=("ibp", "naive-ibp"))
    published = {"ibp": [0.658, 0.108, 0.0, 0.0], "naive-ibp": [0.414, 0.012, 0.0, 0.0]}
    for method, values in published.items():
        got = [report.column(method, e).accuracy for e in report.eps]
        assert np.allclose(got, values, atol=0.01), (method, got)
    crown = robustness_report(model, dataset, (0.02,), clip=(0.0, 1.0), methods=("crown",))
    assert abs(crown.column("crown", 0.02).accuracy - 0.928) <= 0.01


def test_shared_textbook_crown_on_the_ibp_trained_model():
    """On the IBP-trained digits MLP at eps 0.1, textbook CROWN certifies 0.724 as
    published, fewer than IBP (0.794); crown+ibp certifies every image of both."""
    model = require_shared("models", "digits_mlp_ibp_eps0.1.onnx")
    data = require_shared("datasets", "digits_test.npz")
    from verifier.smoothing import load_dataset

    dataset = load_dataset(data, (1, 8, 8), num_classes=10)
    report = robustness_report(model, dataset, (0.1,), clip=(0.0, 1.0),
                               methods=("ibp", "crown", "crown+ibp"))
    column = {m: report.column(m, 0.1) for m in report.methods}
    assert abs(column["crown"].accuracy - 0.724) <= 0.01
    assert abs(column["ibp"].accuracy - 0.794) <= 0.01
    both = column["crown+ibp"].status
    for other in ("ibp", "crown"):
        assert all(b == "certified" for b, s in zip(both, column[other].status)
                   if s == "certified"), other


def test_shared_complete_decides_what_the_bounds_leave_open():
    """digits_mlp_plain, eps 0.1, image 26: CROWN and alpha-CROWN leave it open, PGD
    does not break it, and complete certifies it within its 10 s (by the MILP)."""
    model = require_shared("models", "digits_mlp_plain.onnx")
    data = require_shared("datasets", "digits_test.npz")
    from verifier.smoothing import load_dataset

    dataset = load_dataset(data, (1, 8, 8), num_classes=10)
    report = robustness_report(model, dataset, (0.1,), clip=(0.0, 1.0), indices=[26],
                               methods=("crown", "alpha-crown", "pgd", "complete"))
    status = {m: report.column(m, 0.1).status[0] for m in report.methods}
    assert status == {"crown": "not certified", "alpha-crown": "not certified",
                      "pgd": "robust", "complete": "certified"}, status


def test_gen_specs_indices_and_bad_out(tiny):
    model, _, data, tmp = tiny
    runner = CliRunner()
    out = tmp / "some"
    result = runner.invoke(main, ["gen-specs", model, data, "--eps", "0.1", "--indices", "1-3",
                                  "--out", out])
    assert result.exit_code == 0, result.output
    assert [r.split(",")[1] for r in (out / "instances.csv").read_text().splitlines()] == \
        ["vnnlib/linear_img1_eps0.1.vnnlib", "vnnlib/linear_img2_eps0.1.vnnlib"]
    plain = tmp / "plain"
    plain.write_text("x")
    for bad, message in [(plain, "is a file"), (tmp / "a" / "b", "does not exist")]:
        result = runner.invoke(main, ["gen-specs", model, data, "--eps", "0.1", "--out", bad])
        assert result.exit_code == 2 and message in result.stderr
    result = runner.invoke(main, ["gen-specs", model, data, "--eps", "0.1", "--indices", "9",
                                  "--out", out])
    assert result.exit_code == 2 and "index 9 does not exist" in result.stderr


def test_progress_live_on_a_terminal_and_plain_lines_otherwise():
    from tests.smoothing.test_smooth_cli import _Stream
    from verifier.cli.report_cmd import StageProgress

    tty, plain = _Stream(True), _Stream(False)
    for stream in (tty, plain):
        progress = StageProgress(stream)
        progress("crown eps=0.1 certified", 7, 20)
        for k in range(1, 21):
            progress("complete eps=0.1 images done", k, 20)
    assert tty.text.count("\r") == 21 and tty.text.endswith("complete eps=0.1 images done: "
                                                            "20/20\033[K\n")
    lines = plain.text.splitlines()
    assert "\r" not in plain.text and lines[0] == "progress: crown eps=0.1 certified: 7/20"
    assert len(lines) == 1 + 10 and lines[-1].endswith("images done: 20/20")


def test_smoothing_only_report(tiny):
    from verifier.report import SmoothingOptions, markdown

    model, dataset, _, _ = tiny
    report = robustness_report(model, dataset, (), methods=(),
                               smoothing=SmoothingOptions(0.5, (0.0, 0.1), n=300))
    text = markdown(report)
    assert "| eps |" not in text and "| sigma | clean (r=0) | r=0.1 | abstain |" in text
    assert len(report.smoothing.certificates) == 4

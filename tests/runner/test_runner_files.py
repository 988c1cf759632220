"""Instance lists, ground truth files, subsets and results files."""
from __future__ import annotations

import pytest

from verifier.errors import DataError, InputFileError
from verifier.result import Verdict
from verifier.runner import (Instance, instance_key, read_expected, read_instances,
                             read_results, select)
from tests.runner.conftest import ROWS


def test_read_instances_of_the_tiny_benchmark(tiny):
    instances = read_instances(tiny / "instances.csv")
    assert [(i.onnx, i.vnnlib) for i in instances] == [(o, v) for o, v, _ in ROWS]
    assert all(i.timeout == 20.0 for i in instances)
    assert instances[2].network == "relu" and instances[2].property_name == "relu_sat"
    assert instances[0].line == 1


def test_read_instances_tolerates_blank_lines_a_header_and_spaces(tmp_path):
    path = tmp_path / "instances.csv"
    path.write_text("onnx,vnnlib,timeout\n\n a.onnx , p.vnnlib , 7.5 \n# note\nb.onnx,q.vnnlib,3\n")
    instances = read_instances(path)
    assert instances == [Instance("a.onnx", "p.vnnlib", 7.5, 3), Instance("b.onnx", "q.vnnlib", 3.0, 5)]


@pytest.mark.parametrize("text, message", [
    ("a.onnx,p.vnnlib\n", "expected onnx,vnnlib,timeout"),
    ("a.onnx,p.vnnlib,soon\n", "is not a number"),
    ("a.onnx,p.vnnlib,1\nb.onnx,q.vnnlib,timeout\n", "is not a number"),
    ("a.onnx,p.vnnlib,0\n", "must be positive"),
    ("\n\n", "no instances"),
])
def test_read_instances_rejects_malformed_lists_with_the_line(tmp_path, text, message):
    path = tmp_path / "instances.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_instances(path)


def test_read_instances_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_instances(tmp_path / "nope.csv")


def test_read_expected_with_and_without_header(tiny, tmp_path):
    expected = read_expected(tiny / "expected.csv")
    assert expected[instance_key("onnx/linear.onnx", "vnnlib/linear_sat.vnnlib")] == "sat"
    assert len(expected) == len(ROWS)
    bare = tmp_path / "bare.csv"
    bare.write_text("./a.onnx,p.vnnlib.gz,UNSAT\n")
    assert read_expected(bare) == {("a.onnx", "p.vnnlib"): "unsat"}
    moved = tmp_path / "moved.csv"
    moved.write_text("onnx,vnnlib,source,expected\na.onnx,p.vnnlib,x,sat\n")
    assert read_expected(moved) == {("a.onnx", "p.vnnlib"): "sat"}


def test_read_expected_rejects_unknown_words(tmp_path):
    path = tmp_path / "expected.csv"
    path.write_text("onnx,vnnlib,expected\na.onnx,p.vnnlib,holds\n")
    with pytest.raises(DataError, match=r"expected.csv:2: .*'holds'"):
        read_expected(path)


def test_instance_key_ignores_gz_and_dot_slash():
    assert instance_key("./onnx/a.onnx.gz", "vnnlib/p.vnnlib") == \
        instance_key("onnx/a.onnx", "vnnlib//p.vnnlib.gz")


def test_select_by_glob_substring_and_limit(tiny):
    instances = read_instances(tiny / "instances.csv")
    assert len(select(instances, ["relu"])) == 2
    assert [i.vnnlib for i in select(instances, ["*_unsat.vnnlib"])] == \
        ["vnnlib/linear_unsat.vnnlib", "vnnlib/relu_unsat.vnnlib"]
    assert len(select(instances, ["relu", "broken"])) == 3
    assert select(instances, [], limit=2) == instances[:2]
    assert select(instances, ["nothing-like-this"]) == []


def test_read_results_skips_rows_cut_short(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("onnx,vnnlib,result,seconds,reason,counterexample,check\n"
                    "a.onnx,p.vnnlib,unsat,1.5,proved,,\n"
                    "b.onnx,q.vnnlib,sat,0.2,found,x/b.counterexample,valid\n"
                    "c.onnx,r.vnnlib,uns")
    rows = read_results(path)
    assert [(r.onnx, r.result, r.seconds) for r in rows] == [
        ("a.onnx", Verdict.UNSAT, 1.5), ("b.onnx", Verdict.SAT, 0.2)]
    assert rows[1].check.valid and rows[1].counterexample == "x/b.counterexample"
    assert all(r.resumed for r in rows)
    assert read_results(tmp_path / "absent.csv") == []


def test_read_results_refuses_a_foreign_csv(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("name,value\na,1\n")
    with pytest.raises(DataError, match="not a results file"):
        read_results(path)

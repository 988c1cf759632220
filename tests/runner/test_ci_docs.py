"""docs/ci.md: the GitHub Actions workflow's verify commands run on a small
generated folder; the GitLab job runs the same command and publishes the
same JUnit report."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
junitparser = pytest.importorskip("junitparser")

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ci.md"


def yaml_blocks():
    return [yaml.safe_load(block)
            for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)]


def test_the_gitlab_job_runs_the_workflows_command_and_publishes_junit():
    github, gitlab = yaml_blocks()
    steps = github["jobs"]["verify"]["steps"]
    commands = [step["run"].strip() for step in steps if "verifier run" in step.get("run", "")]
    job = gitlab["verify"]
    assert [line for line in job["script"] if line.startswith("verifier run")] == commands
    assert job["artifacts"]["reports"]["junit"] == "junit.xml"
    published = [step for step in steps if "junit" in str(step.get("with", {}))]
    assert published and all(step["if"] == "always()" for step in published)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_workflows_commands_verify_a_folder_and_write_junit(tiny_template, tmp_path):
    folder = tmp_path / "verification"
    shutil.copytree(tiny_template, folder)
    rows = [line for line in (folder / "instances.csv").read_text().splitlines()
            if "_unsat" in line]  # two properties that hold
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")
    steps = yaml_blocks()[0]["jobs"]["verify"]["steps"]
    script = "\n".join(step["run"] for step in steps
                       if "run" in step and "pip install" not in step["run"])
    script = re.sub(r"(?m)^(\s*)verifier ", rf"\1{sys.executable} -m verifier ", script)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    suite = next(iter(junitparser.JUnitXml.fromfile(str(tmp_path / "junit.xml"))))
    assert suite.tests == 2 and suite.failures == 0
    assert {(case.classname, case.name) for case in suite} == {
        ("linear", "linear_unsat"), ("relu", "relu_unsat")}
    assert (tmp_path / "results.csv").exists()

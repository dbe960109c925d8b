"""scikit-learn's own MLP test file, run against fastmlp's estimators.

At run time the installed ``sklearn/neural_network/tests/test_mlp.py`` is
copied to a temporary directory with only its import of MLPClassifier and
MLPRegressor replaced by fastmlp's, next to a conftest that loads
scikit-learn's fixtures, and run by pytest in a child process.

Deselected by name: the three tests that reach scikit-learn's private
internals (they set ``coefs_`` by hand or read ``_optimizer``). Every other
test of the file must pass (sparse input and the Poisson loss included, issue 25).
"""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sklearn = pytest.importorskip("sklearn")

import fastmlp  # noqa: E402

IMPORT_LINE = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
PRIVATE = ("test_fit", "test_learning_rate_warmstart", "test_adaptive_learning_rate")

CONFTEST = f'''pytest_plugins = ["sklearn.conftest"]

PRIVATE = {PRIVATE!r}


def pytest_collection_modifyitems(config, items):
    kept = [item for item in items if item.originalname not in PRIVATE]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
'''


def _ported_file(directory):
    source = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
    if not source.exists():
        pytest.skip(f"this scikit-learn install has no test files ({source})")
    text = source.read_text()
    assert text.count(IMPORT_LINE + "\n") == 1, f"{source} no longer has the line {IMPORT_LINE!r}"
    target = directory / "test_mlp.py"
    target.write_text(text.replace(IMPORT_LINE, "from fastmlp import MLPClassifier, MLPRegressor"))
    (directory / "conftest.py").write_text(CONFTEST)
    (directory / "pytest.ini").write_text("[pytest]\n")        # its own rootdir, no repo options
    return target


def _outcomes(junit_xml):
    """{test id: None if it passed, else its failure text}, skips left out."""
    outcomes = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if case.find("skipped") is not None and bad is None:
            continue
        text = None if bad is None else f"{bad.get('message', '')}\n{bad.text or ''}"
        outcomes[case.get("name")] = text
    return outcomes


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sklearn_mlp")
    target = _ported_file(directory)
    junit = directory / "report.xml"
    env = dict(os.environ)
    package_root = str(Path(fastmlp.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(target), "-q", "-p", "no:cacheprovider",
         f"--junitxml={junit}"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=1800)
    if not junit.exists():
        pytest.fail(f"pytest did not run scikit-learn's tests:\n{proc.stdout}\n{proc.stderr}")
    return _outcomes(junit), proc.stdout


def _base(name):
    return name.split("[")[0]


def test_sklearn_mlp_tests_pass(suite):
    outcomes, output = suite
    failed = {name: text for name, text in outcomes.items()
              if text is not None}
    report = "\n\n".join(f"{name}:\n{text}" for name, text in failed.items())
    assert not failed, f"{len(failed)} of scikit-learn's MLP tests fail:\n{report}\n\n{output[-3000:]}"
    passed = [name for name, text in outcomes.items() if text is None]
    assert len(passed) >= 50, output[-3000:]
    assert not any(_base(name) in PRIVATE for name in outcomes)

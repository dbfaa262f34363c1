"""Installing detloss into an environment that already has the mmdet stack changes
nothing but detloss, and the package metadata says what the plugin needs at run time.

The dry run is pip's own plan (``pip install --dry-run --report``) for ``pip install -e
<repo>`` in the Python running the tests, offline (``--no-index``: every dependency
must already be satisfied) and without build isolation (the installed setuptools
builds the metadata). Nothing is installed.
"""
import json
import subprocess
import sys
from importlib import metadata

import pytest

from _tools_helpers import REPO

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

STACK = ('torch', 'mmengine', 'mmcv', 'mmdet', 'matplotlib', 'setuptools')


def _pyproject():
    if tomllib is None:
        pytest.skip('tomllib needs Python >= 3.11')
    with open(f'{REPO}/pyproject.toml', 'rb') as f:
        return tomllib.load(f)


def _requirement_names(reqs):
    out = []
    for req in reqs:
        name = req
        for sep in '<>=!~;[ ':
            name = name.split(sep)[0]
        out.append(name.strip().lower())
    return out


def test_runtime_dependencies_are_declared():
    project = _pyproject()['project']
    deps = _requirement_names(project['dependencies'])
    # matplotlib: TrainingCurvesHook of the quick-start configs draws at run time
    assert {'torch', 'mmengine', 'mmdet', 'matplotlib'} <= set(deps)
    # mmcv is documented, not listed (as in mmdet's metadata): pip could only satisfy it
    # by building mmcv from source, without its compiled ops
    assert 'mmcv' not in deps
    text = open(f'{REPO}/pyproject.toml').read()
    assert 'mim install "mmcv>=2.0.0rc4,<2.2.0"' in text
    assert 'matplotlib' not in _requirement_names(project['optional-dependencies']['test'])


def test_version_is_written_once():
    data = _pyproject()
    assert 'version' not in data['project']
    assert data['project']['dynamic'] == ['version']
    assert data['tool']['setuptools']['dynamic']['version'] == {
        'attr': 'detloss_plugin.__version__'}
    import detloss_plugin
    assert isinstance(detloss_plugin.__version__, str) and detloss_plugin.__version__


def test_install_into_existing_stack_plans_only_detloss(tmp_path):
    missing = []
    for name in STACK:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        pytest.skip(f'this environment does not have the stack yet: {missing}')
    report = tmp_path / 'report.json'
    cmd = [sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index',
           '--no-build-isolation', '--disable-pip-version-check', '--quiet',
           '--report', str(report), '-e', REPO]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(report.read_text())
    names = [item['metadata']['name'] for item in plan['install']]
    # pip plans detloss alone: torch, mmcv, mmdet, ... are already satisfied and
    # nothing would be replaced, upgraded or built
    assert names == ['detloss-plugin'], names
    import detloss_plugin
    assert plan['install'][0]['metadata']['version'] == detloss_plugin.__version__
    assert plan['install'][0]['download_info']['dir_info'].get('editable') is True


def test_bootstrap_keeps_an_existing_torch_and_mmcv():
    """scripts/bootstrap.sh installs torch only where there is none, keeps an mmcv with
    compiled ops, and pins both for every later pip call (a static check of the
    script: running it would install into a fresh environment)."""
    text = open(f'{REPO}/scripts/bootstrap.sh').read()
    subprocess.run(['bash', '-n', f'{REPO}/scripts/bootstrap.sh'], check=True)
    torch_install = text.index('install -q "$TORCH_SPEC"')
    assert text.rfind('import torch" 2>/dev/null', 0, torch_install) != -1
    pin = text.index('export PIP_CONSTRAINT="$CONSTRAINTS"')
    assert pin > torch_install
    # every pip install after the pin goes through "${PIP[@]}" (the exported constraints
    # apply to it)
    after = text[pin:]
    assert 'pip install' not in after.replace('"${PIP[@]}" install', '')
    assert "keeping the installed mmcv" in text

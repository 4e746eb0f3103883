"""The notebooks are thin clients that run: their code defines nothing, every library name
they use exists, and each runs top to bottom on the `tiny` model (trained by the notebook on a
tiny synthesized corpus) without an error."""

import ast
import importlib
import json
import os
from pathlib import Path

import nbclient
import nbformat
import pytest


ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))


def _code_cells(path):
  cells = json.loads(path.read_text())['cells']
  return [''.join(c['source']) for c in cells if c['cell_type'] == 'code']


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_only_existing_library_names(path):
  tree = ast.parse('\n\n'.join(_code_cells(path)))
  modules = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('navai_jax.'):
      modules.update({a.asname or a.name: importlib.import_module(f'{node.module}.{a.name}')
                      for a in node.names})
    assert not isinstance(node, (ast.FunctionDef, ast.ClassDef)), 'the notebook defines code'
  used = [(n.value.id, n.attr) for n in ast.walk(tree)
          if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
          and n.value.id in modules]
  assert len({m for m, _ in used}) >= 5
  missing = [f'{m}.{a}' for m, a in used if not hasattr(modules[m], a)]
  assert not missing, f'the notebook calls names the library lacks: {missing}'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom_on_tiny(path, tmp_path, monkeypatch, script_env):
  monkeypatch.setenv('NAVAI_WORKDIR', str(tmp_path / 'no_run_here'))
  monkeypatch.setenv('NAVAI_NOTEBOOK_DIR', str(tmp_path))
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('XLA_FLAGS', script_env(1)['XLA_FLAGS'])  # one device, as a user's kernel
  monkeypatch.setenv('PYTHONPATH', str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
  notebook = nbformat.read(path, as_version=4)
  nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': str(ROOT)}}).execute()
  outputs = [o for c in notebook.cells if c.cell_type == 'code' for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  assert sum('image/png' in o.get('data', {}) for o in outputs) >= 3  # Figure 2, 3, layer 5
  assert any('audio/wav' in o.get('data', {}) or 'audio' in str(o.get('data', {}))
             for o in outputs)
  assert (tmp_path / 'tiny' / 'notebook_figure3.png').exists()

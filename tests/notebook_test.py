"""The notebook is a thin client: its code parses and every library name it uses exists."""

import ast
import importlib
import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent.parent / 'notebooks' / 'introspection.ipynb'


def _code_cells():
  cells = json.loads(NOTEBOOK.read_text())['cells']
  return [''.join(c['source']) for c in cells if c['cell_type'] == 'code']


def test_notebook_uses_only_existing_library_names():
  tree = ast.parse('\n\n'.join(_code_cells()))
  modules = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module == 'navai_jax':
      modules.update({a.asname or a.name: importlib.import_module(f'navai_jax.{a.name}')
                      for a in node.names})
    assert not isinstance(node, (ast.FunctionDef, ast.ClassDef)), 'the notebook defines code'
  used = [(n.value.id, n.attr) for n in ast.walk(tree)
          if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
          and n.value.id in modules]
  assert len({m for m, _ in used}) >= 5
  missing = [f'{m}.{a}' for m, a in used if not hasattr(modules[m], a)]
  assert not missing, f'the notebook calls names the library lacks: {missing}'

"""The house's map is true: each subpackage imports only those below it (the order of the
package docstring and of every subpackage's "May import" line), and no module imports itself
back through others."""

import ast
import pathlib
import re

import navai_jax


ROOT = pathlib.Path(navai_jax.__file__).parent
# Lowest first, as navai_jax/__init__.py lists them.
ORDER = ('configs', 'core', 'recognizer', 'speech', 'training', 'introspection', 'faithfulness',
         'outputs', 'stages')


def _imports() -> dict[str, set[str]]:
  """'package.module' -> the 'package.module's of navai_jax it imports."""
  found = {}
  for path in sorted(ROOT.glob('*/*.py')):
    name = f'{path.parent.name}.{path.stem}'
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('navai_jax'):
        parts = node.module.split('.')[1:]
        if len(parts) == 1:  # from navai_jax.package import module
          targets |= {f'{parts[0]}.{a.name}' for a in node.names}
        elif parts:
          targets.add('.'.join(parts[:2]))
      elif isinstance(node, ast.Import):
        targets |= {'.'.join(a.name.split('.')[1:3]) for a in node.names
                    if a.name.startswith('navai_jax.')}
    found[name] = {t for t in targets if not t.endswith('.__init__')}
  return found


def test_the_package_docstring_lists_the_subpackages_in_order():
  listed = re.findall(r'^  (\w+) {2,}', navai_jax.__doc__, re.M)
  assert tuple(listed) == ORDER
  assert {p.name for p in ROOT.iterdir() if (p / '__init__.py').exists()} == set(ORDER)


def test_no_subpackage_imports_one_above_it():
  upward = [f'{module} -> {target}' for module, targets in _imports().items()
            for target in targets
            if ORDER.index(target.split('.')[0]) > ORDER.index(module.split('.')[0])]
  assert not upward


def test_each_subpackage_says_what_it_may_import_and_does_only_that():
  imports = _imports()
  for package in ORDER[1:]:
    doc = (ROOT / package / '__init__.py').read_text()
    said = re.search(r'May import: ([^.(]*)', doc).group(1)
    below = set(ORDER[:ORDER.index(package)])
    allowed = (below if 'everything below' in said else set() if said.startswith('nothing')
               else set(re.findall(r'\w+', said)))
    assert allowed <= below, package
    used = {t.split('.')[0] for m, ts in imports.items() if m.startswith(package + '.')
            for t in ts} - {package}
    assert used <= allowed, (package, used - allowed)


def test_no_module_imports_itself_back():
  imports = _imports()
  state = {}

  def visit(module, path):
    if state.get(module) == 'done':
      return
    assert state.get(module) != 'open', ' -> '.join(path + [module])
    state[module] = 'open'
    for target in sorted(imports.get(module, ())):
      visit(target, path + [module])
    state[module] = 'done'

  for module in imports:
    visit(module, [])

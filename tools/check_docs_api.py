#!/usr/bin/env python
"""Check that the built docs have an API entry for every public name.

Public names: everything in ``__all__`` of ``detloss_plugin.functional``,
``detloss_plugin.models.losses``, ``.models.dense_heads``, ``.models.roi_heads``,
``detloss_plugin.ops``, ``detloss_plugin.engine`` and ``detloss_plugin.datasets``, and
every class registered in detloss's registries. Usage::

    python tools/check_docs_api.py docs/_build/html/objects.inv

Exits 1 and lists the missing names when any has no entry in the inventory.
"""
import importlib
import sys

from sphinx.util.inventory import InventoryFile

PUBLIC_MODULES = ['detloss_plugin.functional', 'detloss_plugin.models.losses',
                  'detloss_plugin.models.dense_heads', 'detloss_plugin.models.roi_heads',
                  'detloss_plugin.models.task_modules', 'detloss_plugin.ops', 'detloss_plugin.engine',
                  'detloss_plugin.datasets']


def documented_names(inventory_path):
    with open(inventory_path, 'rb') as f:
        inventory = InventoryFile.load(f, '', lambda base, uri: uri)
    names = set()
    for kind, entries in inventory.items():
        if kind.startswith('py:'):
            names.update(name.rsplit('.', 1)[-1] for name in entries)
    return names


def public_names():
    names = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, '__all__', []):
            names.setdefault(name, module_name)
    import detloss_plugin.registry as registry
    for attr in dir(registry):
        reg = getattr(registry, attr)
        if isinstance(reg, registry.Registry) and reg.scope == 'detloss_plugin':
            for name in reg.module_dict:
                names.setdefault(name, f'registry {reg.name}')
    return names


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    documented = documented_names(argv[0])
    missing = {n: m for n, m in public_names().items() if n not in documented}
    if missing:
        print('public names without an API entry in the docs:')
        for name, where in sorted(missing.items()):
            print(f'  {name} ({where})')
        return 1
    print(f'every public name has an API entry ({len(public_names())} names)')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Plugins for every test run of the repository.

`tests.firestore_emulator` is registered here, once, rather than imported into each conftest
that needs it: a session fixture imported into two conftest files is two fixtures, and would
start two Java emulators in one run.
"""

pytest_plugins = ["tests.firestore_emulator"]

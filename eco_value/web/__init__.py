"""Local web console: runs, map, explain chains, land-unit values and the exchange operator's desk.

Every page calls the library functions the CLI calls (see :mod:`eco_value.web.app`). Start it with
``eco-value serve``; it binds to 127.0.0.1 unless ``--public`` is given.
"""

"""``botyard`` subcommands: one module each, exposing ``register(subparsers)``.

Each module adds its parser with ``set_defaults(handler=fn)``; a handler takes the parsed
arguments and returns an exit code. Handlers hold no logic: they call core functions.
"""

COMMAND_MODULES = ["run", "compile", "serve", "rollback", "trigger_server", "submit", "schedule", "status", "publish", "fleet", "bench"]

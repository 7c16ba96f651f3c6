"""Pulumi entry point: validate the stack's config, then declare the stack.

The config is validated before anything is declared, so an invalid stack fails with the
key path and nothing else happens.
"""

from infra import config, stack

stack.build(config.load())

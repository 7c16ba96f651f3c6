"""Pulumi mocks are in place before any test module here imports the program."""

from tests.infra.harness import install_default_mocks

install_default_mocks()

"""Meterplane: a bring-your-own-cloud usage-metering data plane.

The one version number of the release lives here: the CLI's ``--version``, the app and
Flink-job image tags and the stack's ``release.version`` default all read it.
"""

__version__ = "0.1.0"

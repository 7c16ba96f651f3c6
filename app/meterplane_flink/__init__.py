"""The Flink aggregation job (PyFlink), run in its own pinned environment (.flink-venv).

This package is not part of the main venv: PyFlink pins Apache Beam, whose grpcio and dill
pins conflict with Pulumi's, so the job has its own requirements file and container image.
It imports only the pure-Python semantics of ``meterplane.core`` (stdlib, msgspec, pyyaml,
pydantic), which are pinned identically in both environments.
"""

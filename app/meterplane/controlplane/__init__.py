"""The reference control plane: a small server implementing the sync protocol
(``docs/control-plane-openapi.yaml``) for the demo, local runs and tests."""

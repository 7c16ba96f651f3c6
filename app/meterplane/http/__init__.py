"""HTTP transport: the API of DESIGN.md 3.2."""

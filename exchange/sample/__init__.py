"""Sample registries and federation layout for the demo and the tests (made-up people only)."""

"""A stand-in third provider, shaped exactly as a shipped one under nodes/hosted/providers/
(CONTRIBUTING.md's "Adding a provider" walks through it): entry.py (the line a shipped provider
adds to nodes/hosted/provider_table.py), wire.py, api.py, nodes.py; its fake is fakes/queue.py.
It does not ship as a node: test_third_provider.py adds its table entry and runs it."""

"""Registry connectors: adapters between a gateway and an agency's existing registry.

SQL, HTTP and Python-callable connectors map a registry's rows to an evidence document.
"""

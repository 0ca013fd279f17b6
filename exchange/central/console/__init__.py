"""The central authority's console: the instance's operators decide agencies' applications and
look after the registry, the certificates and the global configuration from a web page.

Served under ``/console`` by the authority when ``EXCHANGE_CENTRAL_CONSOLE_ENABLED`` (off by
default). Staff sign in at an OIDC issuer as at a gateway's console (:mod:`exchange.web.staff`).

- :mod:`~exchange.central.console.app`: the routes, each with the right it needs;
- :mod:`~exchange.central.console.versions`: global configuration versions and their diff.
"""

"""The gateway console: the member's own staff run their gateway from a web page.

Served under ``/console`` on the consumer listener (the member's own network) when
``[console] enabled``; refused on a listener bound to a public address unless allowed
(:class:`~exchange.gateway.settings.ConsoleSpec`). Staff sign in at an OIDC issuer; their ID
token's role claim gives them console roles, and each route needs one right
(:mod:`~exchange.gateway.console.staff`).

- :mod:`~exchange.gateway.console.app`: the routes, each with the right it needs;
- :mod:`~exchange.gateway.console.staff`: roles, rights, who is signed in;
- :mod:`~exchange.gateway.console.services`: the services page and the form that declares one
  (stored and served by :mod:`exchange.gateway.declared`);
- :mod:`~exchange.gateway.console.operations`: figures from the operational records;
- :mod:`~exchange.gateway.console.host`: CPU, memory and disk of the gateway's host;
- :mod:`~exchange.gateway.console.auditing`: the audit browser, verification and export;
- :mod:`~exchange.gateway.console.certificates`: the gateway's certificates and their expiry;
- :mod:`~exchange.gateway.console.enrolling`: generate the keys, download the requests, enrol;
- :mod:`~exchange.gateway.console.setup`: the console of a gateway not enrolled yet, served
  alone until it is.
"""

"""Python connector: call a function the agency provides, bounded in time.

The target is ``module:function``. It receives the declared parameters as keyword arguments and
returns the evidence dict (or ``None`` for "no record"). A coroutine function runs on the event
loop; a plain function runs in a worker thread so that it cannot block other exchanges.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from connectors.base import ConnectorRequest, Evidence, require_parameters
from exchange.errors import Error, NotFound, ServiceFailed, ServiceTimeout


def resolve(target: str) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"callable target {target!r} must look like 'package.module:function'")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise ValueError(f"{target} is not callable")
    return function  # type: ignore[no-any-return]


class CallableConnector:
    def __init__(
        self, *, target: str | Callable[..., Any], parameters: tuple[str, ...], timeout: float = 5.0
    ) -> None:
        self._function = resolve(target) if isinstance(target, str) else target
        self._parameters = parameters
        self._timeout = timeout
        # Its own bounded threads: a hanging function must not starve the shared executor that
        # the configuration refresh also uses.
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="python-connector")

    def check(self, request: ConnectorRequest) -> dict[str, str]:
        return require_parameters(request, self._parameters)

    async def fetch(self, request: ConnectorRequest) -> Evidence:
        values = self.check(request)
        try:
            if inspect.iscoroutinefunction(self._function):
                call = self._function(**values)
            else:
                call = asyncio.get_running_loop().run_in_executor(
                    self._executor, functools.partial(self._function, **values)
                )
            result = await asyncio.wait_for(call, self._timeout)
        except TimeoutError as exc:
            raise ServiceTimeout(f"registry did not answer within {self._timeout:g} s") from exc
        except Error:
            raise
        except Exception as exc:
            raise ServiceFailed("registry function failed") from exc
        if result is None:
            raise NotFound("the registry holds no record for this request")
        if not isinstance(result, dict):
            raise ServiceFailed("registry function returned something other than a dict")
        return result

    async def probe(self) -> str:
        # Calling the function would ask for a record: that it was found is all there is.
        return f"the function {getattr(self._function, '__name__', 'given')} is loaded"

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

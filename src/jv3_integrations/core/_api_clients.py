"""``JinaAPIProvider``'s HTTP clients: made on first use, an async one per event loop.

A client made here is closed by :meth:`HTTPClients.close`; an injected one is never closed.
They share one TLS context.
"""

from __future__ import annotations

import asyncio
import ssl
import threading

import httpx

from ._transport import new_client

__all__ = ["HTTPClients"]


class HTTPClients:
    """The sync and async HTTP clients of one provider.

    Args:
        timeout: Seconds for each HTTP attempt (the clients' own timeout).
        max_concurrency: Most requests in flight (the connection pool holds two more).
        http_client: An ``httpx.Client`` to use; never closed here.
        async_http_client: An ``httpx.AsyncClient`` to use; never closed here.
    """

    def __init__(
        self,
        *,
        timeout: float,
        max_concurrency: int,
        http_client: httpx.Client | None,
        async_http_client: httpx.AsyncClient | None,
    ) -> None:
        self._timeout = timeout
        self._max_concurrency = max_concurrency
        self._lock = threading.Lock()
        self._client: httpx.Client | None = http_client
        self._owns_client = http_client is None
        self.bounded = False  # whether self._client bounds every byte itself (new_client)
        self._aclient: httpx.AsyncClient | None = async_http_client
        self._owns_aclient = async_http_client is None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._aserial: asyncio.Lock | None = None
        self._aslots_loop: asyncio.AbstractEventLoop | None = None
        self._ssl_context: ssl.SSLContext | None = None

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self._max_concurrency + 2,
            max_keepalive_connections=self._max_concurrency + 2,
        )

    def _tls(self) -> ssl.SSLContext:
        # One TLS context per provider: building one costs ~0.2 s, and async code run with
        # asyncio.run() needs a fresh AsyncClient per event loop.
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    def get_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client, self.bounded = new_client(
                    timeout=self._timeout, limits=self._limits(), ssl_context=self._tls()
                )
            return self._client

    def _new_aclient(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout), limits=self._limits(), verify=self._tls()
        )

    def get_aclient(self) -> tuple[httpx.AsyncClient, asyncio.Lock]:
        loop = asyncio.get_running_loop()
        if self._owns_aclient and (self._aclient is None or self._aclient_loop is not loop):
            # An AsyncClient is bound to its event loop: a new loop (asyncio.run) needs a new one.
            self._aclient = self._new_aclient()
            self._aclient_loop = loop
        client = self._aclient
        if client is None:  # closed while in use: start afresh on this loop
            client = self._aclient = self._new_aclient()
            self._aclient_loop = loop
        if self._aserial is None or self._aslots_loop is not loop:
            self._aserial = asyncio.Lock()
            self._aslots_loop = loop
        return client, self._aserial

    def close(self) -> None:
        """Close the HTTP clients made here (injected clients stay open)."""
        client: httpx.Client | None = None
        with self._lock:
            if self._owns_client:
                client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._owns_aclient and self._aclient is not None:
            aclient, self._aclient = self._aclient, None
            loop = self._aclient_loop
            self._aclient_loop = None
            if loop is not None and not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(aclient.aclose())

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self._owns_aclient and self._aclient is not None:
            aclient, self._aclient = self._aclient, None
            same_loop = self._aclient_loop is asyncio.get_running_loop()
            self._aclient_loop = None
            if same_loop:
                await aclient.aclose()
        self.close()

"""The Flower engine: pfedkit's algorithms on Flower's Message API (``pip install 'pfedkit[flower]'``).

- `codec`: payloads (any dtype) <-> ``ArrayRecord``, losslessly.
- `messages`: the message types and record names the two sides use.
- `client`: `make_client_app` — a node serves one client; its personal state lives in the
  node's ``Context.state``.
- `server`: `FlowerServer` — the simulator's rounds over a ``Grid`` (our loop, since Flower's
  strategies aggregate weights only), with reply validation (`validation`) and timeouts.
- `loopback`: `LoopbackGrid` — the same apps in one process, for tests and debugging.

The wiring from a config to these pieces (the deployable ServerApp/ClientApp, Ray simulation,
the app folder) is in ``pfedkit.runs.flower_app``; docs/deploy.md explains a deployment.
"""

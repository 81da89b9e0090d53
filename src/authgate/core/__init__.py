"""The services authgate is made of, one idea each, framework-free and without SQL.

* :mod:`.users` — create, register, disable, roles, passwords set by an operator
* :mod:`.signin` — checking a password under the login throttle; device cookies
* :mod:`.sessions` — cookie sessions: log in, look up, rotate, end, list
* :mod:`.grants` — the token endpoint's grants, access-token checks, RFC 7009 revocation
* :mod:`.revocation` — typed revocation events: applied here, published to every process
* :mod:`.credentials` — random credentials, their digests, MACs under the server secret

:class:`authgate.engine.Engine` wires them over a store, the hot state and the buses.
"""

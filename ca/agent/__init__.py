"""The node agent: keeps this node's SVIDs current and hands them out.

Workloads get them over the SPIFFE Workload API (:mod:`ca.agent.workload_api`),
Envoy over SDS (:mod:`ca.agent.sds`), file-reading programs from a directory
(:mod:`ca.agent.files`). :mod:`ca.agent.agent` renews them from the CA.

Errors (all in :mod:`ca.agent.errors`)::

    AgentError
     ├── CaError              the CA could not give what was asked (``code``)
     │    ├── CaUnavailable   transient: unreachable, timeout, 5xx, rate-limited
     │    └── CaRejected      the CA refused (4xx): bad token, not authorized
     ├── PeerCredentialsError the caller of a Unix socket cannot be identified
     ├── RateLimited          a workload is over its rate of CA requests
     ├── FileWriteError       file mode could not write its files
     ├── InvalidJwtSvid       (also ValueError; .reason) in ca.agent.jwt_validate
     └── AgentStartupError    bad configuration or refused at start, in ca.agent.run
"""

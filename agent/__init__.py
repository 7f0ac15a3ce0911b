"""The node agent: keeps this node's SVIDs current and hands them out.

Workloads get them over the SPIFFE Workload API (:mod:`agent.workload_api`),
Envoy over SDS (:mod:`agent.sds`), file-reading programs from a directory
(:mod:`agent.files`). :mod:`agent.node` renews them from the CA.

It depends on the shared base (:mod:`meshward`) only, never on :mod:`ca`:
it talks to the CA over its HTTPS API. Running it beside the CA in one
process (``meshward up``) is :mod:`meshward.cli.up_agent`'s job.

Errors (all in :mod:`agent.errors`), under the shared root::

    MeshwardError               (meshward.errors)
    └── AgentError
     ├── CaRequestFailed      a call to the CA failed (``code``)
     │    ├── CaUnavailable   transient: unreachable, timeout, 5xx, rate-limited
     │    └── CaRejected      the CA refused (4xx): bad token, not authorized
     ├── PeerCredentialsError the caller of a Unix socket cannot be identified
     ├── RateLimited          a workload is over its rate of CA requests
     ├── FileWriteError       file mode could not write its files
     ├── InvalidJwtSvid       (also ValueError; .reason) in agent.jwt_validate
     └── AgentStartupError    bad configuration or refused at start, in agent.run
"""

"""The web console: server-rendered pages over the PDP's and the CA's admin APIs.

``meshward console`` serves it (docs/console.md). It reads, it never changes
live state: the one form that computes anything, the playground, evaluates a
what-if bundle inside the console process.
"""

"""The web console: server-rendered pages over the PDP's and the CA's admin APIs.

``meshward console`` serves it (docs/console.md). It reads, it never changes
live state: the one form that computes anything, the playground, evaluates a
what-if bundle inside the console process.

Every error it raises derives from :class:`console.errors.ConsoleError`,
itself under :class:`meshward.errors.MeshwardError`; ``code`` is snake_case::

    ConsoleError      console.errors; console.server raises it when the console
    │                 cannot start as configured (exit 2)     code console_error
    ├── EditError     console.whatif: the playground's edit or request cannot
    │                 be evaluated (the page shows why)       code bad_edit
    └── Unavailable   console.sources: the PDP or the CA could not be read
                      (the page says which and why)           code unavailable
"""

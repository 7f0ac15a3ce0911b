"""Caller authentication: mTLS peers, XFCC from trusted proxies, JWT bearer tokens.

Verification is pure (the time is a value, keys are given); the only I/O is
fetching OIDC key sets, in :mod:`authz.authn.jwks`.
"""

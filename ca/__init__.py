"""The certificate authority: short-lived SPIFFE X.509-SVIDs and JWT-SVIDs."""

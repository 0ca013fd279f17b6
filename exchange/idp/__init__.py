"""A development identity provider: test citizens, a login page, signed OIDC ID tokens."""

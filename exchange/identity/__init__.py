"""Citizens' identity: strict validation of OIDC ID tokens, from any issuer."""

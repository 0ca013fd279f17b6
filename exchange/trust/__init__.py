"""The trust fabric: keys and certificates, the trust anchor and the signed global configuration."""

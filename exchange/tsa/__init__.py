"""The timestamping authority (RFC 3161): signs the time at which a hash was seen."""

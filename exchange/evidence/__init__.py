"""Evidence documents: XSD schemas per evidence type, and safe parsing of untrusted XML."""

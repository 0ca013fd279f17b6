"""The gateway (X-Road's security server): consumer side, provider side, and their trust."""

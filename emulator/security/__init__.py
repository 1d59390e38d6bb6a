"""Who may reach the server: the request gate, its Host/Origin checks, SigV4 access keys, and HTTPS."""

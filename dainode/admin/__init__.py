"""Admin JSON-RPC 2.0 over a Unix socket: protocol, server and client."""

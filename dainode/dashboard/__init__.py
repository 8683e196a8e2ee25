"""The read-only web dashboard and Prometheus endpoint of a node (http.listen)."""

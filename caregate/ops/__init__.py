"""Operations: health probes, request ids, structured logs and Prometheus metrics."""

"""kaminaric -> HAProxy (http mode, websocket tunnel) -> kaminaris -> echo, every mask mode."""

from proxies import run_proxy_suite, start_haproxy

run_proxy_suite("haproxy", start_haproxy)

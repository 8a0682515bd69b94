"""kaminaric -> nginx (websocket reverse proxy) -> kaminaris -> echo, every mask mode."""

from proxies import run_proxy_suite, start_nginx

run_proxy_suite("nginx", start_nginx)

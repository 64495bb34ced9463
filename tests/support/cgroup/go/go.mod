module keepalive-test-client

go 1.19

package agent_test

import "github.com/shoal-dev/shoal/agent/upstream"

func upstreamRegistry(host, endpoint string) upstream.Registry {
	return upstream.Registry{Host: host, Endpoint: endpoint, Insecure: true}
}

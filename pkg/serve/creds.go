package serve

import (
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// insecureCreds: without GRPC_TLS_* files, traffic between the suite's
// services is plaintext and stays inside the cluster network (see k8s
// NetworkPolicies); internal calls still need INTERNAL_TOKEN. With them,
// see TLS (mutual TLS).
func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }

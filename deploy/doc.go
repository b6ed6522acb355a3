// Package deploy holds the offline checks of the repository's non-Go files:
// the docs/ pages name code that exists; the Kubernetes
// manifests under k8s/ and docker-compose.yml are validated offline against
// the k8s.io/api types, compose-go and the environment variables the
// services actually read.
package deploy

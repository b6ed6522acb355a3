// Package deploy holds the checks of the deployment files: the Kubernetes
// manifests under k8s/ and docker-compose.yml are validated offline against
// the k8s.io/api types, compose-go and the environment variables the
// services actually read.
package deploy

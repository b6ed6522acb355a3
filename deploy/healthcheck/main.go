// Command healthcheck is the container health probe of the compose setup.
// The images are distroless (no shell, no curl), so each one carries this
// static binary and docker-compose.yml runs it in exec form:
//
//	healthcheck grpc 127.0.0.1:9091          grpc.health.v1 Check of the whole server
//	healthcheck http http://127.0.0.1:8080/healthz
//
// It exits 0 when the target serves and 1 otherwise. Kubernetes does not need
// it with k8s/base (native grpc and httpGet probes); with mutual TLS
// (k8s/overlays/mtls) the kubelet's grpc probe cannot present a
// certificate, so the probe runs this binary, which then dials with the
// container's own GRPC_TLS_CERT_FILE / GRPC_TLS_KEY_FILE / GRPC_TLS_CA_FILE
// and expects the server to present a certificate for the first DNS name of
// that same certificate (the probe and the server share it).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: healthcheck grpc HOST:PORT | healthcheck http URL")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var err error
	switch os.Args[1] {
	case "grpc":
		err = checkGRPC(ctx, os.Args[2])
	case "http":
		err = checkHTTP(ctx, os.Args[2])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		os.Exit(1)
	}
}

func checkGRPC(ctx context.Context, target string) error {
	creds, err := transport()
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %s", resp.GetStatus())
	}
	return nil
}

// transport is plaintext unless GRPC_TLS_* name the container's mutual TLS files.
func transport() (credentials.TransportCredentials, error) {
	certFile, keyFile, caFile := os.Getenv("GRPC_TLS_CERT_FILE"), os.Getenv("GRPC_TLS_KEY_FILE"), os.Getenv("GRPC_TLS_CA_FILE")
	if certFile == "" {
		return insecure.NewCredentials(), nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, RootCAs: pool}
	if len(leaf.DNSNames) > 0 {
		cfg.ServerName = leaf.DNSNames[0]
	}
	return credentials.NewTLS(cfg), nil
}

func checkHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	return nil
}

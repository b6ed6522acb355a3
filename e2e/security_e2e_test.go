package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/pkg/tlstest"
)

// startRefused runs one service binary with env (and nothing of the
// suite's own variables) and returns what it printed; it must exit with
// status 1 within a few seconds, before listening.
func startRefused(t *testing.T, name string, env ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name))
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"REDIS_URL=redis://127.0.0.1:1/0", "SECRETS_KEY=" + secretsKey, "LOG_LEVEL=warn",
		"REGISTRY_ADDR=127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)),
		"INGESTION_ADDR=127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)),
		"DELIVERY_ADDR=127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s kept running; output:\n%s", name, out.String())
	}
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("%s exited %d, want 1; output:\n%s", name, cmd.ProcessState.ExitCode(), out.String())
	}
	return out.String()
}

// TestOutsideDevModeAServiceWithoutAnInternalCredentialRefusesToStart:
// registry, ingestion and delivery exit at once, saying why, when neither
// INTERNAL_TOKEN nor DEV_MODE is set.
func TestOutsideDevModeAServiceWithoutAnInternalCredentialRefusesToStart(t *testing.T) {
	for _, name := range []string{"registry", "ingestion", "delivery"} {
		out := startRefused(t, name, "PRODUCER_TOKEN="+producerToken)
		if !strings.Contains(out, "INTERNAL_TOKEN is unset") {
			t.Errorf("%s did not say why it refused to start:\n%s", name, out)
		}
	}
}

// TestMakeRunGuardsTheInternalRPCsWithAFreshToken: under `make run` (no
// INTERNAL_TOKEN in the environment) the suite works end to end, yet the
// registry's internal RPCs refuse callers without the run's own token.
func TestMakeRunGuardsTheInternalRPCsWithAFreshToken(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	root, _ := filepath.Abs("..")
	port := func() string { return "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) }
	gw, reg := port(), port()
	cmd := exec.Command(filepath.Join(root, "scripts", "run.sh"))
	cmd.Env = append(os.Environ(), "BIN="+binDir, "GATEWAY_ADDR="+gw, "REGISTRY_ADDR="+reg, "INGESTION_ADDR="+port(),
		"DELIVERY_ADDR="+port(), "REDIS_PORT="+strconv.Itoa(redistest.FreePort(t)), "REDIS_URL=", "INTERNAL_TOKEN=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logPath := filepath.Join(t.TempDir(), "run.log")
	logf, _ := os.Create(logPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); _ = cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("run.sh output:\n%s", out)
		}
	})
	client := &http.Client{Timeout: 5 * time.Second}
	eventually(t, 60*time.Second, "make run's suite healthy", func() bool {
		resp, err := client.Get("http://" + gw + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// End to end: publishing asks the registry for subscribers over an
	// internal RPC, so it only succeeds when the run's token is in place.
	post := func(path, token, body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+gw+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	code, acct := post("/v1/accounts", "dev-admin-token", `{"name":"Acme"}`)
	if code != 200 {
		t.Fatalf("POST /v1/accounts = %d %v", code, acct)
	}
	acctID := acct["account"].(map[string]any)["id"].(string)
	code, evt := post("/v1/events", "dev-producer-token",
		`{"accountId":"`+acctID+`","type":"upload.completed","data":{"uploadId":"upl_1","size":1,"format":"mp3"}}`)
	if code != 200 {
		t.Fatalf("POST /v1/events = %d %v", code, evt)
	}

	cc, err := grpc.NewClient(reg, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rc := registryv1.NewRegistryInternalServiceClient(cc)
	for _, token := range []string{"", "dev-internal-token", internalToken, acct["apiKey"].(string)} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		_, err := rc.GetAccountSettings(ctx, &registryv1.GetAccountSettingsRequest{AccountId: acctID})
		cancel()
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("GetAccountSettings with %q under make run: %v, want Unauthenticated", token, err)
		}
	}
}

// TestOutsideDevModeIngestionWithoutAProducerTokenRefusesToStart: gRPC
// publishing is never left open in production.
func TestOutsideDevModeIngestionWithoutAProducerTokenRefusesToStart(t *testing.T) {
	out := startRefused(t, "ingestion", "INTERNAL_TOKEN="+internalToken)
	if !strings.Contains(out, "PRODUCER_TOKEN is unset") {
		t.Errorf("ingestion did not say why it refused to start:\n%s", out)
	}
}

// TestTheSuiteRunsOnMutualTLSAlone: with GRPC_TLS_* files and no
// INTERNAL_TOKEN the four processes start, talk to each other over mutual
// TLS and deliver an event; the gateway serves HTTPS from its own files;
// the gateway's certificate cannot read signing secrets from the real
// registry, and a client without a certificate gets no answer.
func TestTheSuiteRunsOnMutualTLSAlone(t *testing.T) {
	ca := tlstest.NewCA(t, "suite")
	mounts := map[string]*tlstest.Mount{}
	serviceEnv := map[string]map[string]string{}
	for _, svc := range []string{"registry", "ingestion", "delivery", "gateway"} {
		m := tlstest.NewMount(t, ca.Issue(t, "127.0.0.1", "localhost", "spiffe://voxscriber/"+svc), ca)
		mounts[svc] = m
		serviceEnv[svc] = map[string]string{"GRPC_TLS_CERT_FILE": m.Cert(), "GRPC_TLS_KEY_FILE": m.Key(), "GRPC_TLS_CA_FILE": m.CA()}
	}
	public := tlstest.NewMount(t, ca.Issue(t, "127.0.0.1"), ca)
	serviceEnv["gateway"]["GATEWAY_TLS_CERT_FILE"] = public.Cert()
	serviceEnv["gateway"]["GATEWAY_TLS_KEY_FILE"] = public.Key()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	s := startSuite(t, SuiteOptions{Env: map[string]string{"INTERNAL_TOKEN": ""}, ServiceEnv: serviceEnv, HTTPS: &tls.Config{RootCAs: roots}})

	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("Acme")
	s.NewEndpoint(key, rc.URL+"/hook", "upload.completed")
	s.MustDo(200, "POST", "/v1/events", producerToken, map[string]any{
		"accountId": acct, "type": "upload.completed", "data": map[string]any{"uploadId": "upl_1", "size": 1, "format": "mp3"},
	}, nil)
	eventually(t, 15*time.Second, "the event delivered over a suite on mutual TLS", func() bool { return rc.Count() == 1 })

	dial := func(m *tlstest.Mount) registryv1.RegistryInternalServiceClient {
		tl, err := serve.LoadTLS(serve.TLSFiles{Cert: m.Cert(), Key: m.Key(), CA: m.CA()})
		if err != nil {
			t.Fatal(err)
		}
		cc, err := serve.DialWith(s.Addrs["registry"], serve.Credentials{TLS: tl})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return registryv1.NewRegistryInternalServiceClient(cc)
	}
	var eps struct {
		Endpoints []Endpoint `json:"endpoints"`
	}
	s.MustDo(200, "GET", "/v1/endpoints", key, nil, &eps)
	req := &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: eps.Endpoints[0].ID}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := dial(mounts["gateway"]).GetDeliveryTarget(ctx, req); status.Code(err) != codes.PermissionDenied {
		t.Errorf("GetDeliveryTarget with the gateway's certificate: %v, want PermissionDenied", err)
	}
	if resp, err := dial(mounts["delivery"]).GetDeliveryTarget(ctx, req); err != nil || len(resp.GetSecrets()) == 0 {
		t.Errorf("GetDeliveryTarget with delivery's certificate: %v, %v", resp, err)
	}
	cc, err := grpc.NewClient(s.Addrs["registry"], grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := registryv1.NewRegistryInternalServiceClient(cc).GetDeliveryTarget(ctx, req); err == nil {
		t.Error("a client without a certificate read signing secrets")
	}
}

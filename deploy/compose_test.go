package deploy

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// composeOnly are variables compose sets that the Kubernetes manifests
// deliberately do not: the demo receiver on the compose network is plain
// http on a private address, which production never allows.
var composeOnly = map[string]bool{"ENDPOINT_ALLOW_HTTP": true, "ENDPOINT_ALLOWED_CIDRS": true}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  abs,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(abs, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("voxscriber-webhooks", true) })
	if err != nil {
		t.Fatalf("compose-go: %v", err)
	}
	return p
}

func TestComposeLoadsAndValidates(t *testing.T) {
	p := loadCompose(t)
	for _, want := range []string{"redis", "jaeger", "mailpit", "registry", "ingestion", "delivery", "gateway", "demo-receiver"} {
		if _, err := p.GetService(want); err != nil {
			t.Errorf("compose: %v", err)
		}
	}
	r, _ := p.GetService("redis")
	if cmd := strings.Join(r.Command, " "); !strings.Contains(cmd, "--appendonly yes") || !strings.Contains(cmd, "--appendfsync always") || len(r.Volumes) == 0 {
		t.Errorf("redis: AOF with appendfsync always on a volume, got %q", cmd)
	}
	ports := defaultPorts(t)
	for _, s := range suiteServices {
		svc, _ := p.GetService(s)
		if svc.Build == nil || svc.Build.Context != mustAbs(t, root) || svc.Build.Dockerfile != "services/"+s+"/Dockerfile" {
			t.Errorf("%s: build %+v: want the repository root and services/%s/Dockerfile", s, svc.Build, s)
		}
		if svc.HealthCheck == nil || len(svc.HealthCheck.Test) < 3 || svc.HealthCheck.Test[0] != "CMD" || svc.HealthCheck.Test[1] != "/healthcheck" {
			t.Errorf("%s: healthcheck %+v: want the exec-form /healthcheck probe", s, svc.HealthCheck)
		} else if !strings.Contains(svc.HealthCheck.Test[len(svc.HealthCheck.Test)-1], ":"+itoa(ports[s])) {
			t.Errorf("%s: healthcheck probes %v, want port %d", s, svc.HealthCheck.Test, ports[s])
		}
		if v := svc.Environment[listenVar(s)]; v == nil || *v != ":"+itoa(ports[s]) {
			t.Errorf("%s: %s should be %q", s, listenVar(s), ":"+itoa(ports[s]))
		}
		for dep := range svc.DependsOn {
			if _, err := p.GetService(dep); err != nil {
				t.Errorf("%s depends on %s: %v", s, dep, err)
			}
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestComposeEnvMatchesServicesAndManifests: compose sets only variables
// the services read; each is also set for that service in Kubernetes
// (ConfigMap, its Deployment env), and the tuning values agree.
func TestComposeEnvMatchesServicesAndManifests(t *testing.T) {
	p := loadCompose(t)
	reads := allServiceEnv(t)
	m := newManifests()
	loadKustomization(t, kustomizations[0], m)
	cm := m.configmaps["webhooks-config"].Data
	for _, s := range suiteServices {
		svc, _ := p.GetService(s)
		checkSet(t, "docker-compose.yml", s, reads[s], keys(svc.Environment))
		k8s := map[string]string{}
		for k, v := range cm {
			k8s[k] = v
		}
		for _, e := range m.deployments[s].Spec.Template.Spec.Containers[0].Env {
			k8s[e.Name] = e.Value
		}
		for k, v := range svc.Environment {
			kv, ok := k8s[k]
			if !ok && !composeOnly[k] {
				t.Errorf("compose sets %s for %s; the Kubernetes manifests do not", k, s)
				continue
			}
			if (strings.HasPrefix(k, "DELIVERY_") && k != "DELIVERY_ADDR") || strings.HasPrefix(k, "EVENT_") || k == listenVar(s) {
				if v == nil || *v != kv {
					t.Errorf("%s: %s is %v in compose, %q in Kubernetes", s, k, deref(v), kv)
				}
			}
		}
		// What Kubernetes gives a service that reads it, compose gives too
		// (not the Go runtime's tuning, which follows a container's memory
		// limit that compose does not set).
		for k := range k8s {
			if _, ok := svc.Environment[k]; !ok && reads[s].reads(k) && !goRuntimeEnv[k] && !isSecretOrDevDefault(k) {
				t.Errorf("Kubernetes sets %s for %s; docker-compose.yml does not", k, s)
			}
		}
	}
	// The demo receiver gets only what it reads.
	dr, _ := p.GetService("demo-receiver")
	own := scan(getenvCall, readFile(t, "deploy/demo-receiver/main.go"))
	for k := range dr.Environment {
		if !own[k] {
			t.Errorf("demo-receiver: compose sets %s, which it does not read", k)
		}
	}
}

// isSecretOrDevDefault: compose may leave these to the services' defaults.
func isSecretOrDevDefault(k string) bool {
	return strings.HasSuffix(k, "_TOKEN") || k == "SECRETS_KEY" || k == "SMTP_ADDR" || k == "SMTP_FROM"
}

func deref(p *string) string {
	if p == nil {
		return "<unset>"
	}
	return *p
}

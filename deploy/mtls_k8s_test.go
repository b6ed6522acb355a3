package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestTheMutualTLSOverlayMountsEachServicesCertificate: k8s/overlays/mtls
// gives every service the cert-manager Secret of its own Certificate as a
// directory mount (so renewals reach the process), points GRPC_TLS_* into
// it, names each service by its spiffe://voxscriber/<service> URI SAN and
// the Service name it is dialed by, and probes the gRPC services with
// /healthcheck instead of the kubelet's grpc probe (which cannot present a
// certificate). The env it sets is what the services read.
func TestTheMutualTLSOverlayMountsEachServicesCertificate(t *testing.T) {
	dir := "../k8s/overlays/mtls"
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(k.Resources, "../../base") || !slices.Contains(k.Resources, "certificates.yaml") {
		t.Fatalf("resources %v", k.Resources)
	}
	type cert struct {
		Kind string
		Spec struct {
			SecretName string   `json:"secretName"`
			DNSNames   []string `json:"dnsNames"`
			URIs       []string `json:"uris"`
			Usages     []string `json:"usages"`
		}
	}
	certs := map[string]cert{} // by secret name
	certsRaw, err := os.ReadFile(filepath.Join(dir, "certificates.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(certsRaw), "\n---\n") {
		var c cert
		if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
			t.Fatal(err)
		}
		if c.Kind == "Certificate" {
			certs[c.Spec.SecretName] = c
		}
	}
	ports := defaultPorts(t)
	reads := allServiceEnv(t)
	var patched []string
	for _, p := range k.Patches {
		patched = append(patched, p.Path)
	}
	for _, s := range suiteServices {
		path := s + "-tls.yaml"
		if !slices.Contains(patched, path) {
			t.Errorf("%s: no patch %s", s, path)
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := yaml.UnmarshalStrict(raw, &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d.Name != s || len(d.Spec.Template.Spec.Containers) != 1 || d.Spec.Template.Spec.Containers[0].Name != s {
			t.Fatalf("%s: patches %s/%v", path, d.Name, d.Spec.Template.Spec.Containers)
		}
		c := d.Spec.Template.Spec.Containers[0]
		mount := ""
		for _, m := range c.VolumeMounts {
			if m.Name == "tls" && m.SubPath == "" && m.ReadOnly {
				mount = m.MountPath
			}
		}
		secret := ""
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == "tls" && v.Secret != nil {
				secret = v.Secret.SecretName
			}
		}
		if mount == "" || secret == "" {
			t.Errorf("%s: needs a read-only directory mount of a Secret volume named tls", s)
			continue
		}
		var set []string
		for _, e := range c.Env {
			set = append(set, e.Name)
			if strings.HasPrefix(e.Name, "GRPC_TLS_") && !strings.HasPrefix(e.Value, mount+"/") {
				t.Errorf("%s: %s=%s is outside the mount %s", s, e.Name, e.Value, mount)
			}
		}
		for _, want := range []string{"GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE", "GRPC_TLS_CA_FILE"} {
			if !slices.Contains(set, want) {
				t.Errorf("%s: %s not set", s, want)
			}
		}
		checkSet(t, dir+" patch", s, reads[s], set)
		crt, ok := certs[secret]
		if !ok {
			t.Errorf("%s: no Certificate writes Secret %s", s, secret)
			continue
		}
		if !slices.Contains(crt.Spec.URIs, "spiffe://voxscriber/"+s) || len(crt.Spec.DNSNames) == 0 || crt.Spec.DNSNames[0] != s ||
			!slices.Contains(crt.Spec.Usages, "client auth") {
			t.Errorf("%s: Certificate %+v", s, crt.Spec)
		}
		if s == "gateway" {
			continue
		}
		if !slices.Contains(crt.Spec.Usages, "server auth") {
			t.Errorf("%s: Certificate lacks server auth", s)
		}
		want := []string{"/healthcheck", "grpc", "127.0.0.1:" + itoa(ports[s])}
		for what, pr := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if pr == nil || pr.Exec == nil || !slices.Equal(pr.Exec.Command, want) || pr.GRPC != nil {
				t.Errorf("%s: %s probe %+v, want exec %v", s, what, pr, want)
			}
		}
		// `grpc: null` in the patch is what removes the base's grpc probe.
		if strings.Count(string(raw), "grpc: null") != 2 {
			t.Errorf("%s: the patch must null both base grpc probes", s)
		}
	}
}

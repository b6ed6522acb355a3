package deploy

import (
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestHistoryTierIsDeployed: compose runs the official PostgreSQL on a
// named volume with a healthcheck, and ingestion and delivery get its
// DATABASE_URL; in Kubernetes both read DATABASE_URL from the Secret, and
// the in-cluster PostgreSQL is reachable only by them.
func TestHistoryTierIsDeployed(t *testing.T) {
	p := loadCompose(t)
	pg, err := p.GetService("postgres")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pg.Image, "postgres:") || len(pg.Volumes) == 0 || pg.Volumes[0].Type != "volume" || pg.Volumes[0].Target != "/var/lib/postgresql/data" {
		t.Errorf("postgres: image %q volumes %+v: want the official image on a named volume", pg.Image, pg.Volumes)
	}
	if _, ok := p.Volumes[pg.Volumes[0].Source]; !ok {
		t.Errorf("postgres: volume %q is not a named volume of the project", pg.Volumes[0].Source)
	}
	if hc := pg.HealthCheck; hc == nil || len(hc.Test) < 2 || hc.Test[1] != "pg_isready" {
		t.Errorf("postgres: healthcheck %+v, want pg_isready", pg.HealthCheck)
	}
	db := deref(pg.Environment["POSTGRES_DB"])
	for _, s := range []string{"ingestion", "delivery"} {
		svc, _ := p.GetService(s)
		u, err := url.Parse(deref(svc.Environment["DATABASE_URL"]))
		if err != nil || u.Scheme != "postgres" || u.Hostname() != "postgres" || u.Path != "/"+db {
			t.Errorf("%s: DATABASE_URL %q, want postgres://…@postgres:5432/%s", s, deref(svc.Environment["DATABASE_URL"]), db)
		}
		if _, ok := svc.DependsOn["postgres"]; ok {
			t.Errorf("%s depends on postgres: PostgreSQL is never a start-up dependency", s)
		}
	}

	m := newManifests()
	loadKustomization(t, kustomizations[0], m)
	for _, s := range []string{"ingestion", "delivery"} {
		found := false
		for _, e := range m.deployments[s].Spec.Template.Spec.Containers[0].Env {
			if e.Name == "DATABASE_URL" {
				found = e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "webhooks-secrets"
			}
		}
		if !found {
			t.Errorf("%s: DATABASE_URL must come from the webhooks-secrets Secret", s)
		}
	}
	if u, err := url.Parse(m.secrets["webhooks-secrets"].StringData["DATABASE_URL"]); err != nil || u.Hostname() != "postgres" {
		t.Errorf("base DATABASE_URL should name the in-cluster postgres Service: %v", u)
	}
	if m.statefulsets["postgres"] == nil || m.services["postgres"] == nil || len(m.statefulsets["postgres"].Spec.VolumeClaimTemplates) != 1 {
		t.Error("base: a postgres StatefulSet on a PVC and its Service")
	}
	np := m.netpols["postgres"]
	if np == nil {
		t.Fatal("no postgres NetworkPolicy")
	}
	var from []string
	for _, r := range np.Spec.Ingress {
		for _, f := range r.From {
			if f.PodSelector != nil {
				from = append(from, f.PodSelector.MatchLabels["app.kubernetes.io/name"])
			}
		}
	}
	if strings.Join(from, ",") != "ingestion,delivery" {
		t.Errorf("postgres admits %v, want ingestion and delivery only", from)
	}
}

func TestManagedPostgresOverlay(t *testing.T) {
	m := newManifests()
	loadKustomization(t, kustomizations[2], m)
	if m.statefulsets["postgres"] != nil || m.services["postgres"] != nil || m.netpols["postgres"] != nil {
		t.Error("the overlay must remove the in-cluster PostgreSQL")
	}
	if m.statefulsets["redis"] == nil {
		t.Error("the overlay keeps the in-cluster Redis")
	}
	u, err := url.Parse(m.secrets["webhooks-secrets"].StringData["DATABASE_URL"])
	if err != nil || u.Hostname() == "postgres" || u.Query().Get("sslmode") != "require" {
		t.Errorf("overlay DATABASE_URL %v: a managed host with sslmode=require", u)
	}
	eg := m.netpols["delivery-managed-postgres"]
	if eg == nil || len(eg.Spec.Egress) != 1 || eg.Spec.Egress[0].Ports[0].Port.IntVal != 5432 {
		t.Error("delivery needs an egress rule to the managed PostgreSQL's subnet on 5432")
	}
}

// prometheusRule is the part of the Prometheus Operator's PrometheusRule
// (monitoring.coreos.com/v1) we write; strict decoding refuses anything
// else, so a misspelt field fails here rather than in the cluster.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// TestAlertRules: k8s/base/monitoring is a kustomization of one
// PrometheusRule alerting on the archive backlog's age, the schedule's lag
// and Redis memory; every rule has a well-formed expression, a duration, a
// severity and a summary.
func TestAlertRules(t *testing.T) {
	dir := "../k8s/base/monitoring"
	raw, err := os.ReadFile(dir + "/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil || len(k.Resources) != 1 {
		t.Fatalf("%s/kustomization.yaml: %v %v", dir, err, k.Resources)
	}
	raw, err = os.ReadFile(dir + "/" + k.Resources[0])
	if err != nil {
		t.Fatal(err)
	}
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(raw, &pr); err != nil {
		t.Fatalf("PrometheusRule: %v", err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name == "" {
		t.Fatalf("%s %s %q", pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}
	metrics := map[string]bool{}
	alerts := map[string]bool{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if alerts[r.Alert] || r.Alert == "" {
				t.Errorf("alert %q: empty or repeated", r.Alert)
			}
			alerts[r.Alert] = true
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", r.Alert)
			}
			if !balanced(r.Expr) || !strings.ContainsAny(r.Expr, "<>") {
				t.Errorf("%s: expression %q: unbalanced or no threshold", r.Alert, r.Expr)
			}
			for _, name := range []string{"webhook_archive_backlog_age_seconds", "webhook_schedule_lag_seconds", "redis_memory_used_bytes"} {
				if strings.Contains(r.Expr, name) {
					metrics[name] = true
				}
			}
		}
	}
	for _, name := range []string{"webhook_archive_backlog_age_seconds", "webhook_schedule_lag_seconds", "redis_memory_used_bytes"} {
		if !metrics[name] {
			t.Errorf("no alert on %s", name)
		}
	}
	// The base does not include it: it needs the operator's CRD.
	base := readFile(t, "k8s/base/kustomization.yaml")
	if strings.Contains(stripComments(base), "monitoring") {
		t.Error("k8s/base must not include the PrometheusRule (a cluster without the CRD would refuse the whole base)")
	}
}

func balanced(s string) bool {
	depth := 0
	for _, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0 && strings.TrimSpace(s) != ""
}

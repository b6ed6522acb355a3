package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's schema we use; strict decoding
// rejects anything else.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
	Patches []struct {
		Path string `json:"path"`
	} `json:"patches"`
}

// manifests is every object of a kustomization, decoded.
type manifests struct {
	deployments  map[string]*appsv1.Deployment
	statefulsets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configmaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs         map[string]*policyv1.PodDisruptionBudget
	netpols      map[string]*networkingv1.NetworkPolicy
}

func newManifests() *manifests {
	return &manifests{
		deployments: map[string]*appsv1.Deployment{}, statefulsets: map[string]*appsv1.StatefulSet{},
		services: map[string]*corev1.Service{}, configmaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, netpols: map[string]*networkingv1.NetworkPolicy{},
	}
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeFile strict-decodes every document of a manifest file into its
// k8s.io/api type and adds it to m.
func (m *manifests) decodeFile(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, doc := range docSep.Split(string(raw), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Errorf("%s doc %d: %v", path, i, err)
			continue
		}
		var obj interface{ GetName() string }
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			obj, m.deployments[name(doc)] = o, o
		case "apps/v1 StatefulSet":
			o := &appsv1.StatefulSet{}
			obj, m.statefulsets[name(doc)] = o, o
		case "v1 Service":
			o := &corev1.Service{}
			obj, m.services[name(doc)] = o, o
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			obj, m.configmaps[name(doc)] = o, o
		case "v1 Secret":
			o := &corev1.Secret{}
			obj, m.secrets[name(doc)] = o, o
		case "autoscaling/v2 HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			obj, m.hpas[name(doc)] = o, o
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			obj, m.pdbs[name(doc)] = o, o
		case "networking.k8s.io/v1 NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			obj, m.netpols[name(doc)] = o, o
		default:
			t.Errorf("%s doc %d: unexpected %s %s", path, i, tm.APIVersion, tm.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Errorf("%s doc %d (%s): %v", path, i, tm.Kind, err)
		} else if obj.GetName() == "" {
			t.Errorf("%s doc %d (%s): no metadata.name", path, i, tm.Kind)
		}
	}
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func name(doc string) string {
	var o struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	_ = yaml.Unmarshal([]byte(doc), &o)
	return o.Metadata.Name
}

// loadKustomization decodes dir/kustomization.yaml and every resource and
// patch it names (recursively for directories).
func loadKustomization(t *testing.T, dir string, m *manifests) kustomization {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s: apiVersion/kind %s %s", dir, k.APIVersion, k.Kind)
	}
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: resource %s: %v", dir, r, err)
			continue
		}
		if st.IsDir() {
			loadKustomization(t, p, m)
		} else {
			m.decodeFile(t, p)
		}
	}
	for _, p := range k.Patches {
		applyPatch(t, filepath.Join(dir, p.Path), m)
	}
	return k
}

// applyPatch understands the strategic-merge patches the overlays use:
// `$patch: delete` of a whole object, a ConfigMap's data entries and a
// Secret's stringData entries.
func applyPatch(t *testing.T, path string, m *manifests) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("patch %s: %v", path, err)
		return
	}
	var meta struct {
		Patch string `json:"$patch"`
		metav1.TypeMeta
	}
	_ = yaml.Unmarshal(raw, &meta)
	n := name(string(raw))
	if meta.Patch == "delete" {
		var gone bool
		switch meta.Kind {
		case "StatefulSet":
			_, gone = m.statefulsets[n]
			delete(m.statefulsets, n)
		case "Service":
			_, gone = m.services[n]
			delete(m.services, n)
		case "NetworkPolicy":
			_, gone = m.netpols[n]
			delete(m.netpols, n)
		case "Deployment":
			_, gone = m.deployments[n]
			delete(m.deployments, n)
		}
		if !gone {
			t.Errorf("patch %s deletes %s %s, which the base does not have", path, meta.Kind, n)
		}
		return
	}
	if meta.Kind == "Secret" {
		var sec corev1.Secret
		if err := yaml.UnmarshalStrict(raw, &sec); err != nil {
			t.Errorf("patch %s: %v", path, err)
			return
		}
		base := m.secrets[sec.Name]
		if base == nil {
			t.Errorf("patch %s: no Secret %s in the base", path, sec.Name)
			return
		}
		for k, v := range sec.StringData {
			if _, ok := base.StringData[k]; !ok {
				t.Errorf("patch %s adds %s, which the base Secret lacks", path, k)
			}
			base.StringData[k] = v
		}
		return
	}
	if meta.Kind != "ConfigMap" {
		t.Errorf("patch %s: only ConfigMap and Secret data patches and deletes are checked, got %s", path, meta.Kind)
		return
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(raw, &cm); err != nil {
		t.Errorf("patch %s: %v", path, err)
		return
	}
	base := m.configmaps[cm.Name]
	if base == nil {
		t.Errorf("patch %s: no ConfigMap %s in the base", path, cm.Name)
		return
	}
	for k, v := range cm.Data {
		if _, ok := base.Data[k]; !ok {
			t.Errorf("patch %s adds %s, which the base ConfigMap lacks", path, k)
		}
		base.Data[k] = v
	}
}

var kustomizations = []string{"../k8s/base", "../k8s/overlays/redis-cluster", "../k8s/overlays/managed-postgres"}

func TestManifestsStrictDecode(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m := newManifests()
			loadKustomization(t, dir, m)
			for _, s := range suiteServices {
				if m.deployments[s] == nil || m.services[s] == nil || m.hpas[s] == nil || m.pdbs[s] == nil {
					t.Errorf("%s: Deployment, Service, HPA and PDB all needed", s)
				}
			}
		})
	}
}

// TestManifestsSetOnlyWhatServicesRead: ConfigMap keys (shared by envFrom)
// and each container's env are variables the service reads.
func TestManifestsSetOnlyWhatServicesRead(t *testing.T) {
	reads := allServiceEnv(t)
	for _, dir := range kustomizations {
		m := newManifests()
		loadKustomization(t, dir, m)
		for _, s := range suiteServices {
			d := m.deployments[s]
			c := d.Spec.Template.Spec.Containers[0]
			var set []string
			for _, e := range c.Env {
				set = append(set, e.Name)
				if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
					sec := m.secrets[r.SecretKeyRef.Name]
					if sec == nil {
						t.Errorf("%s: secret %s missing", s, r.SecretKeyRef.Name)
					} else if _, ok := sec.StringData[r.SecretKeyRef.Key]; !ok {
						t.Errorf("%s: secret %s has no key %s", s, r.SecretKeyRef.Name, r.SecretKeyRef.Key)
					}
				}
			}
			checkSet(t, dir+" Deployment env", s, reads[s], set)
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef == nil {
					t.Errorf("%s: only configMapRef envFrom is expected (secrets by key)", s)
					continue
				}
				cm := m.configmaps[ef.ConfigMapRef.Name]
				if cm == nil {
					t.Fatalf("%s: ConfigMap %s missing", s, ef.ConfigMapRef.Name)
				}
			}
		}
		// Every shared ConfigMap key is read by some service.
		for _, cm := range m.configmaps {
			for k := range cm.Data {
				readBy := false
				for _, s := range suiteServices {
					readBy = readBy || reads[s].reads(k)
				}
				if !readBy && !pendingEnv[k] {
					t.Errorf("%s ConfigMap %s: no service reads %s", dir, cm.Name, k)
				}
			}
		}
	}
	// Secret keys are each consumed by a service that reads them.
	m := newManifests()
	loadKustomization(t, kustomizations[0], m)
	for k := range m.secrets["webhooks-secrets"].StringData {
		used := false
		var pods []corev1.PodSpec
		for _, d := range m.deployments {
			pods = append(pods, d.Spec.Template.Spec)
		}
		for _, st := range m.statefulsets {
			pods = append(pods, st.Spec.Template.Spec)
		}
		for _, p := range pods {
			for _, e := range p.Containers[0].Env {
				used = used || (e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Key == k)
			}
		}
		if !used {
			t.Errorf("secret key %s is used by no Deployment", k)
		}
	}
}

// TestPortsAndProbesMatchTheBinaries: the listen override, containerPort,
// probes and Service port of each service are pkg/config's default port.
func TestPortsAndProbesMatchTheBinaries(t *testing.T) {
	ports := defaultPorts(t)
	m := newManifests()
	loadKustomization(t, kustomizations[0], m)
	for _, s := range suiteServices {
		want := ports[s]
		d := m.deployments[s]
		c := d.Spec.Template.Spec.Containers[0]
		listen := ""
		for _, e := range c.Env {
			if e.Name == listenVar(s) {
				listen = e.Value
			}
		}
		if listen != ":"+itoa(want) {
			t.Errorf("%s: %s = %q in its Deployment, want %q (listen on the default port)", s, listenVar(s), listen, ":"+itoa(want))
		}
		named := map[string]int32{}
		for _, p := range c.Ports {
			named[p.Name] = p.ContainerPort
		}
		portName := "grpc"
		if s == "gateway" {
			portName = "http"
		}
		if named[portName] != int32(want) {
			t.Errorf("%s: containerPort %s = %d, want %d", s, portName, named[portName], want)
		}
		for what, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil {
				t.Errorf("%s: no %s probe", s, what)
				continue
			}
			var got int32
			switch {
			case p.GRPC != nil:
				got = p.GRPC.Port
			case p.HTTPGet != nil:
				got = p.HTTPGet.Port.IntVal
				if p.HTTPGet.Path != "/healthz" {
					t.Errorf("%s: %s path %s", s, what, p.HTTPGet.Path)
				}
			case p.TCPSocket != nil:
				got = p.TCPSocket.Port.IntVal
			}
			if got != int32(want) {
				t.Errorf("%s: %s probe port %d, want %d", s, what, got, want)
			}
			if s != "gateway" && p.GRPC == nil {
				t.Errorf("%s: %s probe should be native grpc", s, what)
			}
		}
		if s == "gateway" && c.ReadinessProbe.HTTPGet == nil {
			t.Error("gateway: readiness should be httpGet /healthz")
		}
		svc := m.services[s]
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != int32(want) || svc.Spec.Ports[0].TargetPort.StrVal != portName {
			t.Errorf("%s: Service ports %+v, want %d -> %s", s, svc.Spec.Ports, want, portName)
		}
		// Others dial this service by Service name and the same port.
		if got := m.configmaps["webhooks-config"].Data[listenVar(s)]; s != "gateway" && got != s+":"+itoa(want) {
			t.Errorf("ConfigMap %s = %q, want %s:%d", listenVar(s), got, s, want)
		}
		for _, sel := range []map[string]string{svc.Spec.Selector, d.Spec.Selector.MatchLabels, m.pdbs[s].Spec.Selector.MatchLabels} {
			for k, v := range sel {
				if d.Spec.Template.Labels[k] != v {
					t.Errorf("%s: selector %s=%s does not match the pod labels", s, k, v)
				}
			}
		}
		if ref := m.hpas[s].Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != s {
			t.Errorf("%s: HPA targets %+v", s, ref)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestGoMemoryLimitUnderTheContainerLimit: the services collect garbage
// less often than Go's default (pkg/serve), so each sets GOMEMLIMIT at
// 80–95 % of its container's memory limit: the collector works harder as
// the heap nears it instead of the container being killed.
func TestGoMemoryLimitUnderTheContainerLimit(t *testing.T) {
	for _, dir := range kustomizations {
		m := newManifests()
		loadKustomization(t, dir, m)
		for _, s := range suiteServices {
			c := m.deployments[s].Spec.Template.Spec.Containers[0]
			limit := c.Resources.Limits.Memory().Value()
			var set string
			for _, e := range c.Env {
				if e.Name == "GOMEMLIMIT" {
					set = e.Value
				}
			}
			got, err := goMemLimit(set)
			if err != nil {
				t.Errorf("%s, %s: GOMEMLIMIT: %v", filepath.Base(dir), s, err)
				continue
			}
			if ratio := float64(got) / float64(limit); ratio < 0.8 || ratio > 0.95 {
				t.Errorf("%s, %s: GOMEMLIMIT %s is %.0f %% of the memory limit %s, want 80–95 %%",
					filepath.Base(dir), s, set, 100*ratio, c.Resources.Limits.Memory())
			}
		}
	}
}

// goMemLimit parses a GOMEMLIMIT value as the Go runtime reads it: a
// number of bytes with an optional B, KiB, MiB, GiB or TiB suffix.
func goMemLimit(v string) (int64, error) {
	if v == "" {
		return 0, errors.New("not set")
	}
	mult := int64(1)
	for i, suffix := range []string{"TiB", "GiB", "MiB", "KiB", "B"} {
		if strings.HasSuffix(v, suffix) {
			v, mult = strings.TrimSuffix(v, suffix), int64(1)<<(10*(4-i))
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a number of bytes", v)
	}
	return n * mult, nil
}

// TestPodsAreLockedDown: non-root, read-only root, no privilege escalation,
// no capabilities, requests and limits, a grace period longer than the
// delivery timeout plus the services' drain bound.
func TestPodsAreLockedDown(t *testing.T) {
	m := newManifests()
	loadKustomization(t, kustomizations[0], m)
	timeout, err := time.ParseDuration(m.configmaps["webhooks-config"].Data["DELIVERY_TIMEOUT"])
	if err != nil {
		t.Fatal(err)
	}
	const drain = 15 * time.Second // pkg/serve ShutdownTimeout default
	type pod struct {
		name string
		spec corev1.PodSpec
	}
	var pods []pod
	for n, d := range m.deployments {
		pods = append(pods, pod{n, d.Spec.Template.Spec})
	}
	for n, s := range m.statefulsets {
		pods = append(pods, pod{n, s.Spec.Template.Spec})
	}
	for _, p := range pods {
		ps := p.spec.SecurityContext
		if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
			t.Errorf("%s: runAsNonRoot not set", p.name)
		}
		if g := p.spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= timeout+drain {
			t.Errorf("%s: terminationGracePeriodSeconds must exceed %v", p.name, timeout+drain)
		}
		for _, c := range p.spec.Containers {
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
				t.Errorf("%s/%s: securityContext %+v", p.name, c.Name, sc)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() ||
				c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: requests and limits needed", p.name, c.Name)
			}
		}
	}
	r := m.statefulsets["redis"]
	args := strings.Join(r.Spec.Template.Spec.Containers[0].Args, " ")
	if !strings.Contains(args, "--appendonly yes") || !strings.Contains(args, "--appendfsync always") || len(r.Spec.VolumeClaimTemplates) != 1 {
		t.Errorf("redis: want AOF with appendfsync always on a PVC; args %q", args)
	}
}

// TestNetworkPolicies: only the gateway takes traffic from anywhere;
// delivery's internet egress excludes every private range.
func TestNetworkPolicies(t *testing.T) {
	m := newManifests()
	loadKustomization(t, kustomizations[0], m)
	if np := m.netpols["default-deny-ingress"]; np == nil || len(np.Spec.PodSelector.MatchLabels) != 0 || len(np.Spec.Ingress) != 0 {
		t.Fatal("default-deny-ingress must select every pod and allow nothing")
	}
	metrics := int32(9464)
	for _, np := range m.netpols {
		for _, rule := range np.Spec.Ingress {
			open := len(rule.From) == 0
			if !open {
				continue
			}
			if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "gateway" {
				t.Errorf("%s: an ingress rule open to everyone on a pod other than the gateway", np.Name)
			}
			for _, p := range rule.Ports {
				if p.Port.IntVal == metrics {
					t.Errorf("%s: metrics open to everyone", np.Name)
				}
			}
		}
	}
	d := m.netpols["delivery"]
	if d == nil {
		t.Fatal("no delivery NetworkPolicy")
	}
	var internet *networkingv1.IPBlock
	for _, e := range d.Spec.Egress {
		for _, to := range e.To {
			if to.IPBlock != nil && to.IPBlock.CIDR == "0.0.0.0/0" {
				internet = to.IPBlock
			}
		}
	}
	if internet == nil {
		t.Fatal("delivery: no internet egress")
	}
	for _, want := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"} {
		if !contains(internet.Except, want) {
			t.Errorf("delivery egress does not exclude %s", want)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func TestRedisClusterOverlay(t *testing.T) {
	m := newManifests()
	loadKustomization(t, kustomizations[1], m)
	if m.statefulsets["redis"] != nil || m.services["redis"] != nil {
		t.Error("the overlay must remove the in-cluster Redis")
	}
	if u := m.configmaps["webhooks-config"].Data["REDIS_URL"]; !strings.HasPrefix(u, "redis-cluster://") || len(strings.Split(strings.TrimPrefix(u, "redis-cluster://"), ",")) < 2 {
		t.Errorf("overlay REDIS_URL %q", u)
	}
}

// TestDockerfiles: one per service, built from the repository root,
// static, non-root, exposing the default port.
func TestDockerfiles(t *testing.T) {
	ports := defaultPorts(t)
	for _, s := range suiteServices {
		df := readFile(t, filepath.Join("services", s, "Dockerfile"))
		for _, want := range []string{
			"FROM golang:1.26 AS build", "COPY . .", "CGO_ENABLED=0",
			"./services/" + s + "/cmd/" + s, "USER nonroot", "EXPOSE " + itoa(ports[s]),
			`ENTRYPOINT ["/` + s + `"]`, "distroless/static",
		} {
			if !bytes.Contains([]byte(df), []byte(want)) {
				t.Errorf("services/%s/Dockerfile lacks %q", s, want)
			}
		}
	}
}

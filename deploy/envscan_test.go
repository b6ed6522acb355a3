package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// root is the repository root, seen from this module's directory.
const root = ".."

var suiteServices = []string{"registry", "ingestion", "delivery", "gateway"}

// envCall matches a typed config read such as env.String("REDIS_URL", …).
var envCall = regexp.MustCompile(`\.(?:String|Bool|Int|Duration|Schedule|RequiredUnlessDev)\(\s*"([A-Z][A-Z0-9_]*)"`)

// getenvCall matches os.Getenv("NAME") (the demo receiver).
var getenvCall = regexp.MustCompile(`os\.(?:Getenv|LookupEnv)\(\s*"([A-Z][A-Z0-9_]*)"`)

func readFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func scan(re *regexp.Regexp, src string) map[string]bool {
	out := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		out[m[1]] = true
	}
	return out
}

// pendingEnv are variables the deployment files set ahead of the code
// (README's configuration table names them). They are tolerated (and
// logged) while no service reads them yet. None is pending now.
var pendingEnv = map[string]bool{}

// envReads derives, from the source, the variables service reads: its
// main.go, everything config.ReadCommon reads, ssrf.FromEnv when main.go
// calls it. OTEL_* variables are read by the OTel SDK, and goRuntimeEnv by
// the Go runtime of every service (reads reports true for any of them).
type envReads map[string]bool

// goRuntimeEnv are the Go runtime's own variables a deployment may set.
var goRuntimeEnv = map[string]bool{"GOGC": true, "GOMEMLIMIT": true}

func (r envReads) reads(name string) bool {
	return r[name] || strings.HasPrefix(name, "OTEL_") || goRuntimeEnv[name]
}

func serviceEnv(t testing.TB, service string) envReads {
	t.Helper()
	main := readFile(t, filepath.Join("services", service, "cmd", service, "main.go"))
	reads := scan(envCall, main)
	cfg := readFile(t, "pkg/config/config.go")
	common := cfg[strings.Index(cfg, "func ReadCommon"):]
	common = common[:strings.Index(common, "\n}\n")]
	if !strings.Contains(main, "config.ReadCommon(") {
		t.Fatalf("%s does not call config.ReadCommon: the scan needs updating", service)
	}
	for k := range scan(envCall, common) {
		reads[k] = true
	}
	if strings.Contains(main, "ssrf.FromEnv(") {
		files, _ := filepath.Glob(filepath.Join(root, "pkg/ssrf/*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, _ := os.ReadFile(f)
			for k := range scan(envCall, string(b)) {
				reads[k] = true
			}
		}
	}
	if len(reads) < 5 {
		t.Fatalf("%s: found only %v; the scan is broken", service, keys(reads))
	}
	return reads
}

func allServiceEnv(t testing.TB) map[string]envReads {
	out := map[string]envReads{}
	for _, s := range suiteServices {
		out[s] = serviceEnv(t, s)
	}
	return out
}

// checkSet reports every variable in set that service does not read.
func checkSet(t *testing.T, where, service string, reads envReads, set []string) {
	t.Helper()
	for _, k := range set {
		switch {
		case reads.reads(k):
		case pendingEnv[k]:
			t.Logf("%s sets %s for %s, which no service reads yet (pending)", where, k, service)
		default:
			t.Errorf("%s sets %s for %s, which %s does not read", where, k, service, service)
		}
	}
}

// defaultPorts are the listen ports of pkg/config's Default*Addr constants.
func defaultPorts(t testing.TB) map[string]int {
	t.Helper()
	re := regexp.MustCompile(`Default(\w+)Addr\s*=\s*":(\d+)"`)
	out := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(readFile(t, "pkg/config/config.go"), -1) {
		p, _ := strconv.Atoi(m[2])
		out[strings.ToLower(m[1])] = p
	}
	for _, s := range suiteServices {
		if out[s] == 0 {
			t.Fatalf("no Default%sAddr in pkg/config: %v", s, out)
		}
	}
	return out
}

// listenVar is the variable a service listens on (and others dial).
func listenVar(service string) string { return strings.ToUpper(service) + "_ADDR" }

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestEnvScanFindsWhatServicesRead(t *testing.T) {
	reads := allServiceEnv(t)
	for _, want := range []struct{ service, name string }{
		{"registry", "SECRETS_KEY"}, {"registry", "REDIS_URL"}, {"ingestion", "PRODUCER_TOKEN"},
		{"delivery", "DELIVERY_TIMEOUT"}, {"delivery", "ENDPOINT_ALLOWED_CIDRS"}, {"gateway", "GATEWAY_ADDR"},
	} {
		if !reads[want.service].reads(want.name) {
			t.Errorf("scan: %s should read %s; found %v", want.service, want.name, keys(reads[want.service]))
		}
	}
	if reads["registry"].reads("DELIVERY_TIMEOUT") {
		t.Error("scan: registry does not read DELIVERY_TIMEOUT")
	}
}

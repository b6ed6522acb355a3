// Package config reads the suite's 12-factor configuration from environment
// variables. Every service reads only the variables it needs, through the
// same parsers, and reports every bad value at once, naming the variable.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads typed values from an environment and collects errors.
type Env struct {
	lookup func(string) (string, bool)
	errs   []error
}

// FromOS reads the process environment.
func FromOS() *Env { return &Env{lookup: os.LookupEnv} }

// FromMap reads a fixed map (tests).
func FromMap(m map[string]string) *Env {
	return &Env{lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func (e *Env) get(name string) (string, bool) {
	v, ok := e.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// Fail records that variable name holds a bad value v.
func (e *Env) Fail(name, v string, err error) {
	e.errs = append(e.errs, fmt.Errorf("%s=%q: %w", name, v, err))
}

// Check records err, the failure of a check across variables, unless nil.
func (e *Env) Check(err error) {
	if err != nil {
		e.errs = append(e.errs, err)
	}
}

// Err returns every error met so far, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// String returns the variable or def when unset or empty.
func (e *Env) String(name, def string) string {
	if v, ok := e.get(name); ok {
		return v
	}
	return def
}

// RequiredUnlessDev returns a credential that must be set outside
// DEV_MODE (dev); when it is unset there, the error says what its absence
// would leave open (why).
func (e *Env) RequiredUnlessDev(name string, dev bool, why string) string {
	v, ok := e.get(name)
	if !ok && !dev {
		e.errs = append(e.errs, fmt.Errorf("%s is unset: %s; set it (only DEV_MODE=true starts without it)", name, why))
	}
	return v
}

// Bool parses true/false/1/0.
func (e *Env) Bool(name string, def bool) bool {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.Fail(name, v, errors.New("want true or false"))
		return def
	}
	return b
}

// Int parses a decimal integer no smaller than min.
func (e *Env) Int(name string, def, min int) int {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		e.Fail(name, v, fmt.Errorf("want an integer >= %d", min))
		return def
	}
	return n
}

// Duration parses a positive Go duration ("5s", "1m30s").
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.Fail(name, v, errors.New("want a positive duration such as 5s or 2m"))
		return def
	}
	return d
}

// Schedule parses a retry schedule (see ParseSchedule).
func (e *Env) Schedule(name string, def []time.Duration) []time.Duration {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	s, err := ParseSchedule(v)
	if err != nil {
		e.Fail(name, v, err)
		return def
	}
	return s
}

// MaxAttempts bounds the length of a retry schedule.
const MaxAttempts = 20

// DefaultSchedule is the seed's retry schedule: immediately, then after 1
// minute, 5 minutes, 30 minutes and 2 hours.
var DefaultSchedule = []time.Duration{0, time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour}

// DefaultDeliveryRetention is the default of DELIVERY_RETENTION: how long
// events, deliveries (with their attempts) and idempotency keys are kept in
// Redis. Every service that reads the variable uses this default.
const DefaultDeliveryRetention = 7 * 24 * time.Hour

// CheckScheduleFits refuses a retry schedule (DELIVERY_RETRY_SCHEDULE)
// whose delays add up to more than the retention (DELIVERY_RETENTION): a
// delivery's last attempt would then come due after its event and its
// records have expired, so it could never be sent.
func CheckScheduleFits(schedule []time.Duration, retention time.Duration) error {
	var total time.Duration
	for _, d := range schedule {
		total += d
	}
	if total > retention {
		return fmt.Errorf("DELIVERY_RETRY_SCHEDULE adds up to %s, more than DELIVERY_RETENTION=%s: "+
			"the last attempts would come due after the events and deliveries expire; "+
			"shorten the schedule or raise DELIVERY_RETENTION", total, retention)
	}
	return nil
}

// ParseSchedule parses comma-separated Go durations, the delays before
// attempts 1..n: "0s,1m,5m,30m,2h". Each is >= 0 and at most 7 days; there
// are 1 to MaxAttempts of them.
func ParseSchedule(s string) ([]time.Duration, error) {
	parts := strings.Split(s, ",")
	if len(parts) > MaxAttempts {
		return nil, fmt.Errorf("at most %d attempts, got %d", MaxAttempts, len(parts))
	}
	out := make([]time.Duration, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		d, err := time.ParseDuration(p)
		if err != nil {
			return nil, fmt.Errorf("attempt %d: %q is not a duration such as 0s, 1m or 2h", i+1, p)
		}
		if d < 0 || d > 7*24*time.Hour {
			return nil, fmt.Errorf("attempt %d: %s is outside 0s..168h", i+1, p)
		}
		out = append(out, d)
	}
	return out, nil
}

// Default listen addresses; each is also where the other services dial.
const (
	DefaultRedisURL      = "redis://127.0.0.1:6379/0"
	DefaultRegistryAddr  = ":9091"
	DefaultIngestionAddr = ":9092"
	DefaultDeliveryAddr  = ":9093"
	DefaultGatewayAddr   = ":8080"
)

// History tier settings shared by the services that use it.
const (
	// DefaultDatabaseURL is the default of DATABASE_URL.
	DefaultDatabaseURL = "postgres://127.0.0.1:5432/webhooks"
	// DefaultHistoryRetention is the default of HISTORY_RETENTION.
	DefaultHistoryRetention = 720 * time.Hour
	// DefaultParkedRetention is the default of PARKED_RETENTION.
	DefaultParkedRetention = 720 * time.Hour
	// DefaultIdempotencyWindow is the default of IDEMPOTENCY_WINDOW: how
	// long a repeated idempotency key (or event id) returns the original
	// event.
	DefaultIdempotencyWindow = 24 * time.Hour
	// HistoryHealthService is the grpc.health.v1 service name under which
	// each service that uses the history store (registry, ingestion,
	// delivery) reports whether PostgreSQL answers its own pool; it never
	// affects the service's own status. The gateway's /healthz shows it
	// (reachable when all of them reach it).
	HistoryHealthService = "voxscriber.webhooks.history"
)

// CheckIdempotencyWindow refuses an IDEMPOTENCY_WINDOW longer than
// HISTORY_RETENTION: a repeat within the window must still find its
// original event, which history keeps only that long.
func CheckIdempotencyWindow(window, historyRetention time.Duration) error {
	if window > historyRetention {
		return fmt.Errorf("IDEMPOTENCY_WINDOW=%v is longer than HISTORY_RETENTION=%v: a repeat within the window must find its original event, which history keeps only for HISTORY_RETENTION; shorten the window or lengthen the retention", window, historyRetention)
	}
	return nil
}

// Common is what every service reads.
type Common struct {
	RedisURL string
	// InternalToken, when set, guards the internal RPCs between services.
	InternalToken string
	// Dev relaxes start-up checks meant for production (SECRETS_KEY).
	Dev      bool
	LogLevel string
	// MetricsAddr serves /metrics (empty: off).
	MetricsAddr string
	// JaegerUIURL, when set, turns trace ids into links.
	JaegerUIURL string
	// TLS is the services' mutual TLS (GRPC_TLS_*); off when no files.
	TLS GRPCTLS
}

// GRPCTLS names the PEM files of mutual TLS between the services and how
// peers' certificates name the services.
type GRPCTLS struct {
	CertFile, KeyFile, CAFile string
	// Identities overrides, per service name, the certificate SAN that
	// identifies it (GRPC_TLS_IDENTITIES=delivery=spiffe://…,ingestion=…);
	// others are spiffe://voxscriber/<service>.
	Identities map[string]string
}

// Enabled reports whether the files are configured.
func (t GRPCTLS) Enabled() bool { return t.CertFile != "" }

// checkGRPCTLS: GRPC_TLS_* name all three files or none.
func checkGRPCTLS(e *Env, t GRPCTLS) GRPCTLS {
	if set := (t.CertFile != "") || (t.KeyFile != "") || (t.CAFile != ""); set && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "") {
		e.errs = append(e.errs, errors.New("GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE and GRPC_TLS_CA_FILE: set all three (mutual TLS) or none"))
	}
	return t
}

// parseIdentities parses GRPC_TLS_IDENTITIES: service=SAN pairs.
func parseIdentities(e *Env, v string) map[string]string {
	if v == "" {
		return nil
	}
	out := map[string]string{}
	for _, pair := range strings.Split(v, ",") {
		svc, id, ok := strings.Cut(strings.TrimSpace(pair), "=")
		svc, id = strings.TrimSpace(svc), strings.TrimSpace(id)
		if !ok || svc == "" || id == "" {
			e.Fail("GRPC_TLS_IDENTITIES", v, fmt.Errorf("want service=SAN pairs separated by commas, e.g. delivery=spiffe://voxscriber/delivery; got %q", pair))
			continue
		}
		out[svc] = id
	}
	return out
}

// ReadCommon reads the variables every service shares.
func ReadCommon(e *Env) Common {
	return Common{
		RedisURL:      e.String("REDIS_URL", DefaultRedisURL),
		InternalToken: e.String("INTERNAL_TOKEN", ""),
		Dev:           e.Bool("DEV_MODE", false),
		LogLevel:      e.String("LOG_LEVEL", "info"),
		MetricsAddr:   e.String("METRICS_ADDR", ""),
		JaegerUIURL:   strings.TrimRight(e.String("JAEGER_UI_URL", ""), "/"),
		TLS: checkGRPCTLS(e, GRPCTLS{
			CertFile:   e.String("GRPC_TLS_CERT_FILE", ""),
			KeyFile:    e.String("GRPC_TLS_KEY_FILE", ""),
			CAFile:     e.String("GRPC_TLS_CA_FILE", ""),
			Identities: parseIdentities(e, e.String("GRPC_TLS_IDENTITIES", "")),
		}),
	}
}

// CheckInternalCredential is the start-up check of the services that
// serve or call internal RPCs (registry, ingestion, delivery): outside
// DEV_MODE they refuse to start without the suite's internal credential
// (INTERNAL_TOKEN or mutual TLS),
// and say why. In DEV_MODE they start, but a service without one refuses
// every internal call (pkg/authn never fails open).
func (c Common) CheckInternalCredential() error {
	if c.InternalToken != "" || c.TLS.Enabled() || c.Dev {
		return nil
	}
	return errors.New("INTERNAL_TOKEN is unset and mutual TLS is off: the internal RPCs between the services (signing secrets, scheduling, account settings) " +
		"would have no credential. Set INTERNAL_TOKEN to the same random value on every service (e.g. `openssl rand -hex 32`), " +
		"or GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE and GRPC_TLS_CA_FILE; DEV_MODE=true starts without them, but then internal calls are refused")
}

// DialTarget turns a listen address such as ":9091" into a dial target.
func DialTarget(addr string) string {
	if strings.HasPrefix(addr, ":") {
		return "127.0.0.1" + addr
	}
	if strings.HasPrefix(addr, "0.0.0.0:") {
		return "127.0.0.1" + strings.TrimPrefix(addr, "0.0.0.0")
	}
	return addr
}

package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	got, err := ParseSchedule("0s, 1m,5m,30m,2h")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[1] != time.Minute || got[4] != 2*time.Hour {
		t.Fatalf("got %v", got)
	}
	for _, bad := range []string{"", "1m,,2m", "-1s", "soon", "200h", strings.Repeat("1s,", 20) + "1s"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("ParseSchedule(%q) accepted", bad)
		}
	}
}

// TestRetryScheduleLongerThanRetentionIsRefused: a schedule whose delays
// add up to more than DELIVERY_RETENTION is refused, naming both variables;
// one that ends exactly at the retention, and the defaults, are accepted.
func TestRetryScheduleLongerThanRetentionIsRefused(t *testing.T) {
	for _, c := range []struct {
		schedule  string
		retention time.Duration
		ok        bool
	}{
		{"0s,1m,5m,30m,2h", DefaultDeliveryRetention, true},
		{"0s,1h,1h", 2 * time.Hour, true},
		{"0s,1h,1h,1ms", 2 * time.Hour, false},
		{"0s,168h,1s", DefaultDeliveryRetention, false},
		{"0s,1m,5m,30m,2h", time.Hour, false},
	} {
		s, err := ParseSchedule(c.schedule)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckScheduleFits(s, c.retention)
		if c.ok != (err == nil) {
			t.Errorf("%s within %s: %v, want ok %v", c.schedule, c.retention, err, c.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "DELIVERY_RETRY_SCHEDULE") || !strings.Contains(err.Error(), "DELIVERY_RETENTION")) {
			t.Errorf("message %q names not both variables", err)
		}
	}
	e := FromMap(nil)
	e.Check(nil)
	e.Check(CheckScheduleFits([]time.Duration{2 * time.Hour}, time.Hour))
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "DELIVERY_RETENTION=1h0m0s") {
		t.Errorf("Env.Err = %v", err)
	}
}

func TestEnvCollectsErrorsNamingTheVariable(t *testing.T) {
	e := FromMap(map[string]string{"DELIVERY_TIMEOUT": "fast", "ENDPOINT_ALLOW_HTTP": "yes please", "N": "3"})
	if d := e.Duration("DELIVERY_TIMEOUT", 5*time.Second); d != 5*time.Second {
		t.Fatalf("fallback %v", d)
	}
	e.Bool("ENDPOINT_ALLOW_HTTP", false)
	if n := e.Int("N", 1, 1); n != 3 {
		t.Fatalf("Int = %d", n)
	}
	err := e.Err()
	if err == nil || !strings.Contains(err.Error(), "DELIVERY_TIMEOUT") || !strings.Contains(err.Error(), "ENDPOINT_ALLOW_HTTP") {
		t.Fatalf("Err = %v", err)
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"0s,1m,5m,30m,2h", "1ms", "", ",", "1h1h", "9999999999h", "-0s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSchedule(s)
		if err != nil {
			return
		}
		if len(got) == 0 || len(got) > MaxAttempts {
			t.Fatalf("accepted %d attempts", len(got))
		}
		for _, d := range got {
			if d < 0 || d > 7*24*time.Hour {
				t.Fatalf("accepted delay %v", d)
			}
		}
	})
}

// TestOutsideDevModeAServiceWithoutAnInternalCredentialRefusesToStart: no
// INTERNAL_TOKEN is an error naming it, unless DEV_MODE.
func TestOutsideDevModeAServiceWithoutAnInternalCredentialRefusesToStart(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		fail bool
	}{
		{map[string]string{}, true},
		{map[string]string{"INTERNAL_TOKEN": "  "}, true},
		{map[string]string{"DEV_MODE": "false"}, true},
		{map[string]string{"INTERNAL_TOKEN": "s3cret"}, false},
		{map[string]string{"DEV_MODE": "true"}, false},
	} {
		err := ReadCommon(FromMap(tc.env)).CheckInternalCredential()
		if (err != nil) != tc.fail {
			t.Errorf("%v: CheckInternalCredential = %v, want failure %v", tc.env, err, tc.fail)
		}
		if err != nil && !strings.Contains(err.Error(), "INTERNAL_TOKEN") {
			t.Errorf("%v: %v does not name INTERNAL_TOKEN", tc.env, err)
		}
	}
}

// TestACredentialRequiredOutsideDevModeIsAnErrorNamingIt: RequiredUnlessDev
// fails without the variable unless DEV_MODE, saying what is at stake.
func TestACredentialRequiredOutsideDevModeIsAnErrorNamingIt(t *testing.T) {
	e := FromMap(map[string]string{})
	if v := e.RequiredUnlessDev("PRODUCER_TOKEN", false, "publishing would be open"); v != "" {
		t.Fatalf("got %q", v)
	}
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "PRODUCER_TOKEN is unset: publishing would be open") {
		t.Fatalf("Err = %v", err)
	}
	e = FromMap(map[string]string{})
	e.RequiredUnlessDev("PRODUCER_TOKEN", true, "x")
	if err := e.Err(); err != nil {
		t.Fatalf("DEV_MODE: %v", err)
	}
	e = FromMap(map[string]string{"PRODUCER_TOKEN": " tok "})
	if v := e.RequiredUnlessDev("PRODUCER_TOKEN", false, "x"); v != "tok" || e.Err() != nil {
		t.Fatalf("set: %q, %v", v, e.Err())
	}
}

// TestMutualTLSIsAllThreeFilesOrNone: GRPC_TLS_* are read together, and
// GRPC_TLS_IDENTITIES overrides how a service's certificate is named.
func TestMutualTLSIsAllThreeFilesOrNone(t *testing.T) {
	e := FromMap(map[string]string{"GRPC_TLS_CERT_FILE": "/tls/tls.crt", "GRPC_TLS_KEY_FILE": "/tls/tls.key"})
	ReadCommon(e)
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "GRPC_TLS_CA_FILE") {
		t.Fatalf("two of three files: %v", err)
	}
	e = FromMap(map[string]string{"GRPC_TLS_CERT_FILE": "/c", "GRPC_TLS_KEY_FILE": "/k", "GRPC_TLS_CA_FILE": "/ca",
		"GRPC_TLS_IDENTITIES": "delivery=delivery.webhooks.svc, ingestion=spiffe://example/ingest"})
	c := ReadCommon(e)
	if err := e.Err(); err != nil || !c.TLS.Enabled() || c.TLS.Identities["delivery"] != "delivery.webhooks.svc" || c.TLS.Identities["ingestion"] != "spiffe://example/ingest" {
		t.Fatalf("ReadCommon = %+v, %v", c.TLS, err)
	}
	if err := c.CheckInternalCredential(); err != nil {
		t.Fatalf("mutual TLS is an internal credential: %v", err)
	}
	e = FromMap(map[string]string{"GRPC_TLS_IDENTITIES": "delivery"})
	ReadCommon(e)
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "GRPC_TLS_IDENTITIES") {
		t.Fatalf("bad identities: %v", err)
	}
}

package signing

import (
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

type vector struct {
	Name      string `json:"name"`
	Secret    string `json:"secret"`
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
	Body      string `json:"body"`
	Hex       string `json:"x_webhook_signature"`
	Standard  string `json:"webhook_signature"`
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	raw, err := os.ReadFile("testdata/signatures.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []vector `json:"cases"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) < 2 {
		t.Fatalf("want at least 2 vectors, got %d", len(f.Cases))
	}
	return f.Cases
}

func TestKnownAnswerVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			body := []byte(v.Body)
			if got := SignHex(v.Secret, body); got != v.Hex {
				t.Errorf("SignHex = %s, want %s", got, v.Hex)
			}
			if got := SignStandard(v.Secret, v.ID, v.Timestamp, body); got != v.Standard {
				t.Errorf("SignStandard = %s, want %s", got, v.Standard)
			}
			ver := Verifier{Secrets: []string{v.Secret}, Now: func() time.Time { return time.Unix(v.Timestamp+30, 0) }}
			if err := ver.Verify(v.ID, "1614265330", v.Standard, body); v.Timestamp == 1614265330 && err != nil {
				t.Errorf("Verify: %v", err)
			}
			if err := VerifyHex(v.Secret, body, v.Hex); err != nil {
				t.Errorf("VerifyHex: %v", err)
			}
		})
	}
}

// The literal Standard Webhooks reference vector, independent of the file.
func TestStandardWebhooksReference(t *testing.T) {
	const (
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		ts     = "1614265330"
		body   = `{"test": 2432232314}`
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	v := Verifier{Secrets: []string{secret}, Now: func() time.Time { return time.Unix(1614265330, 0) }}
	if err := v.Verify(id, ts, want, []byte(body)); err != nil {
		t.Fatalf("Verify(reference) = %v", err)
	}
	if got := SignStandard(secret, id, 1614265330, []byte(body)); got != want {
		t.Fatalf("SignStandard = %s, want %s", got, want)
	}
}

func TestVerifyFailures(t *testing.T) {
	secret := GenerateSecret()
	other := GenerateSecret()
	body := []byte(`{"id":"evt_1"}`)
	now := time.Unix(1_800_000_000, 0)
	sig := SignStandard(secret, "evt_1", now.Unix(), body)
	at := func(d time.Duration) func() time.Time { return func() time.Time { return now.Add(d) } }
	cases := []struct {
		name    string
		v       Verifier
		id, ts  string
		sig     string
		body    []byte
		wantErr error
	}{
		{"ok", Verifier{Secrets: []string{secret}, Now: at(0)}, "evt_1", "1800000000", sig, body, nil},
		{"ok among several", Verifier{Secrets: []string{other, secret}, Now: at(0)}, "evt_1", "1800000000", "v1,AAAA " + sig, body, nil},
		{"wrong secret", Verifier{Secrets: []string{other}, Now: at(0)}, "evt_1", "1800000000", sig, body, ErrMismatch},
		{"tampered body", Verifier{Secrets: []string{secret}, Now: at(0)}, "evt_1", "1800000000", sig, []byte(`{"id":"evt_2"}`), ErrMismatch},
		{"other id", Verifier{Secrets: []string{secret}, Now: at(0)}, "evt_2", "1800000000", sig, body, ErrMismatch},
		{"too old", Verifier{Secrets: []string{secret}, Now: at(6 * time.Minute)}, "evt_1", "1800000000", sig, body, ErrTimestampSkew},
		{"from the future", Verifier{Secrets: []string{secret}, Now: at(-6 * time.Minute)}, "evt_1", "1800000000", sig, body, ErrTimestampSkew},
		{"custom tolerance", Verifier{Secrets: []string{secret}, Now: at(6 * time.Minute), Tolerance: 10 * time.Minute}, "evt_1", "1800000000", sig, body, nil},
		{"bad timestamp", Verifier{Secrets: []string{secret}, Now: at(0)}, "evt_1", "yesterday", sig, body, ErrTimestampInvalid},
		{"no signature", Verifier{Secrets: []string{secret}, Now: at(0)}, "evt_1", "1800000000", "", body, ErrNoSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.v.Verify(c.id, c.ts, c.sig, c.body)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, c.wantErr)
			}
		})
	}
}

func TestHeadersDuringRotation(t *testing.T) {
	newS, oldS := GenerateSecret(), GenerateSecret()
	body := []byte(`{"x":1}`)
	h := Headers([]string{newS, oldS}, "evt_9", 1_800_000_000, body)
	if h[HeaderSignature] != SignHex(newS, body) {
		t.Errorf("X-Webhook-Signature must use the newest secret")
	}
	if n := len(strings.Fields(h[HeaderStdSignature])); n != 2 {
		t.Fatalf("webhook-signature carries %d signatures, want 2", n)
	}
	for _, s := range []string{newS, oldS} {
		v := Verifier{Secrets: []string{s}, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
		if err := v.Verify(h[HeaderStdID], h[HeaderStdTimestamp], h[HeaderStdSignature], body); err != nil {
			t.Errorf("receiver holding one secret: %v", err)
		}
	}
}

func TestParseSecret(t *testing.T) {
	if _, err := ParseSecret(GenerateSecret()); err != nil {
		t.Fatalf("generated secret rejected: %v", err)
	}
	for _, bad := range []string{"", "secret", "whsec_", "whsec_!!!!", "whsec_AAAA", "whsec_" + strings.Repeat("A", 120)} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("ParseSecret(%q) accepted", bad)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("evt_1", "1800000000", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{}`))
	f.Add("", "", "v1, v1,,", []byte(nil))
	f.Add("x", "-1", "v2,abc v1,", []byte("body"))
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	f.Fuzz(func(t *testing.T, id, ts, sigs string, body []byte) {
		v := Verifier{Secrets: []string{secret}, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
		err := v.Verify(id, ts, sigs, body)
		if err == nil {
			// Accepted only if one of the given signatures is the real one.
			n, perr := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
			if perr != nil {
				t.Fatalf("accepted an unparsable timestamp %q", ts)
			}
			if !containsField(sigs, SignStandard(secret, id, n, body)) {
				t.Fatalf("accepted a forged signature %q", sigs)
			}
		}
	})
}

func containsField(s, want string) bool {
	for _, f := range strings.Fields(s) {
		if f == want {
			return true
		}
	}
	return false
}

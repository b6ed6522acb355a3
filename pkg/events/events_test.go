package events

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// with returns a copy of the sample data of eventType with the given fields
// set, or deleted when their value is the marker deleted.
func with(t testing.TB, eventType string, kv ...any) map[string]any {
	t.Helper()
	data, ok := Sample(eventType)
	if !ok {
		data = map[string]any{}
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == deleted {
			delete(data, kv[i].(string))
		} else {
			data[kv[i].(string)] = kv[i+1]
		}
	}
	return data
}

type deletedMarker struct{}

var deleted = deletedMarker{}

func TestCatalogueOrderAndCopies(t *testing.T) {
	want := []string{
		"transcription.started", "transcription.progress", "transcription.completed",
		"transcription.failed", "transcription.retry", "upload.completed", "credits.low",
		"endpoint.disabled", "endpoint.enabled", "delivery.exhausted",
	}
	cat := Catalogue()
	var got []string
	for _, typ := range cat {
		got = append(got, typ.Name)
		if typ.Description == "" {
			t.Errorf("%s has no description", typ.Name)
		}
		for _, f := range typ.Fields {
			if f.Description == "" || !slices.Contains([]string{KindString, KindNumber, KindInteger}, f.Kind) {
				t.Errorf("%s.%s: bad field %+v", typ.Name, f.Name, f)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Catalogue() = %v, want %v", got, want)
	}

	// Modifying what callers get must not change the catalogue.
	cat[1].Fields[1].Name = "changed"
	*cat[1].Fields[1].Max = 5
	typ, ok := Lookup("transcription.progress")
	if !ok || typ.Fields[1].Name != "percentage" || *typ.Fields[1].Max != 100 {
		t.Fatalf("catalogue was modified through a copy: %+v", typ.Fields[1])
	}
	if _, ok := Lookup("transcription.paused"); ok {
		t.Error("Lookup of an unknown type succeeded")
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name, eventType string
		data            map[string]any
	}{
		{"started", "transcription.started", map[string]any{"uploadId": "upl_1", "engine": "whisper"}},
		{"progress lower bounds", "transcription.progress", map[string]any{"uploadId": "upl_1", "percentage": 0.0, "estimate": 0.0}},
		{"progress upper bound", "transcription.progress", map[string]any{"uploadId": "upl_1", "percentage": 100.0, "estimate": 3600.5}},
		{"completed", "transcription.completed", map[string]any{"uploadId": "upl_1", "text": "<ok> & done", "duration": 0.0, "credits": 0.0}},
		{"failed known type", "transcription.failed", map[string]any{"uploadId": "upl_1", "error": "timed out", "errorType": "timeout"}},
		{"failed other type", "transcription.failed", map[string]any{"uploadId": "upl_1", "error": "quota", "errorType": "quota_exceeded_2"}},
		{"retry first attempt", "transcription.retry", map[string]any{"uploadId": "upl_1", "attempt": 1.0, "engine": "whisper"}},
		{"upload empty file", "upload.completed", map[string]any{"uploadId": "upl_1", "size": 0.0, "format": "wav"}},
		{"credits negative balance", "credits.low", map[string]any{"balance": -2.5, "threshold": 10.0}},
		{"Go integer types", "upload.completed", map[string]any{"uploadId": "upl_1", "size": int64(1024), "format": "mp3"}},
		{"json.Number", "transcription.retry", map[string]any{"uploadId": "upl_1", "attempt": json.Number("3"), "engine": "e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Validate(tt.eventType, tt.data); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name, eventType string
		data            map[string]any
		field           string
		message         string // the whole message, or a part of it when partial
		partial         bool
	}{
		// The type.
		{name: "unknown type", eventType: "transcription.paused", data: map[string]any{},
			field: "type", message: `type: unknown event type "transcription.paused"; known types: transcription.started, transcription.progress, ` +
				"transcription.completed, transcription.failed, transcription.retry, upload.completed, credits.low, endpoint.disabled, endpoint.enabled, delivery.exhausted"},
		{name: "empty type", eventType: "", field: "type", message: "type: is required; known types: transcription.started", partial: true},

		// Missing fields, reported in catalogue order and before anything else.
		{name: "nil data", eventType: "transcription.started", data: nil, field: "data.uploadId", message: "data.uploadId: is required"},
		{name: "missing first", eventType: "transcription.completed", data: with(t, "transcription.completed", "uploadId", deleted, "credits", deleted),
			field: "data.uploadId", message: "data.uploadId: is required"},
		{name: "missing beats wrong type", eventType: "transcription.started", data: map[string]any{"uploadId": 5.0},
			field: "data.engine", message: "data.engine: is required"},
		{name: "missing beats unknown", eventType: "credits.low", data: map[string]any{"balance": 1.0, "bogus": 1.0},
			field: "data.threshold", message: "data.threshold: is required"},
		{name: "missing retry engine", eventType: "transcription.retry", data: with(t, "transcription.retry", "engine", deleted),
			field: "data.engine", message: "data.engine: is required"},
		{name: "missing upload format", eventType: "upload.completed", data: with(t, "upload.completed", "format", deleted),
			field: "data.format", message: "data.format: is required"},
		{name: "missing failed errorType", eventType: "transcription.failed", data: with(t, "transcription.failed", "errorType", deleted),
			field: "data.errorType", message: "data.errorType: is required"},
		{name: "missing progress estimate", eventType: "transcription.progress", data: with(t, "transcription.progress", "estimate", deleted),
			field: "data.estimate", message: "data.estimate: is required"},

		// Strings.
		{name: "string as number", eventType: "transcription.started", data: with(t, "transcription.started", "uploadId", 42.0),
			field: "data.uploadId", message: "data.uploadId: must be a non-empty string, got 42"},
		{name: "string as null", eventType: "transcription.started", data: with(t, "transcription.started", "engine", nil),
			field: "data.engine", message: "data.engine: must be a non-empty string, got null"},
		{name: "string as bool", eventType: "upload.completed", data: with(t, "upload.completed", "format", true),
			field: "data.format", message: "data.format: must be a non-empty string, got true"},
		{name: "string as object", eventType: "transcription.completed", data: with(t, "transcription.completed", "text", map[string]any{}),
			field: "data.text", message: "data.text: must be a non-empty string, got an object"},
		{name: "string as array", eventType: "transcription.failed", data: with(t, "transcription.failed", "error", []any{"x"}),
			field: "data.error", message: "data.error: must be a non-empty string, got an array"},
		{name: "empty string", eventType: "transcription.retry", data: with(t, "transcription.retry", "uploadId", ""),
			field: "data.uploadId", message: "data.uploadId: must not be empty"},
		{name: "invalid UTF-8", eventType: "transcription.completed", data: with(t, "transcription.completed", "text", "bad \xff"),
			field: "data.text", message: "data.text: must be valid UTF-8"},
		{name: "errorType pattern", eventType: "transcription.failed", data: with(t, "transcription.failed", "errorType", "Engine-Error"),
			field: "data.errorType", message: `data.errorType: must match ^[a-z][a-z0-9_]*$, got "Engine-Error"`},
		{name: "errorType leading digit", eventType: "transcription.failed", data: with(t, "transcription.failed", "errorType", "1st_error"),
			field: "data.errorType", message: `must match`, partial: true},
		{name: "long value shortened", eventType: "transcription.failed", data: with(t, "transcription.failed", "errorType", strings.Repeat("é", 100)),
			field: "data.errorType", message: `"…`, partial: true},

		// Numbers and their bounds.
		{name: "number as string", eventType: "transcription.progress", data: with(t, "transcription.progress", "percentage", "abc"),
			field: "data.percentage", message: `data.percentage: must be a number between 0 and 100, got "abc"`},
		{name: "percentage above", eventType: "transcription.progress", data: with(t, "transcription.progress", "percentage", 100.5),
			field: "data.percentage", message: "data.percentage: must be a number between 0 and 100, got 100.5"},
		{name: "percentage below", eventType: "transcription.progress", data: with(t, "transcription.progress", "percentage", -1.0),
			field: "data.percentage", message: "data.percentage: must be a number between 0 and 100, got -1"},
		{name: "negative estimate", eventType: "transcription.progress", data: with(t, "transcription.progress", "estimate", -0.5),
			field: "data.estimate", message: "data.estimate: must be a number >= 0, got -0.5"},
		{name: "negative duration", eventType: "transcription.completed", data: with(t, "transcription.completed", "duration", -1.0),
			field: "data.duration", message: "data.duration: must be a number >= 0, got -1"},
		{name: "negative credits", eventType: "transcription.completed", data: with(t, "transcription.completed", "credits", -3.0),
			field: "data.credits", message: "data.credits: must be a number >= 0, got -3"},
		{name: "number as bool", eventType: "transcription.completed", data: with(t, "transcription.completed", "credits", false),
			field: "data.credits", message: "data.credits: must be a number >= 0, got false"},
		{name: "attempt zero", eventType: "transcription.retry", data: with(t, "transcription.retry", "attempt", 0.0),
			field: "data.attempt", message: "data.attempt: must be an integer >= 1, got 0"},
		{name: "attempt fraction", eventType: "transcription.retry", data: with(t, "transcription.retry", "attempt", 1.5),
			field: "data.attempt", message: "data.attempt: must be an integer >= 1, got 1.5"},
		{name: "attempt as string", eventType: "transcription.retry", data: with(t, "transcription.retry", "attempt", "2"),
			field: "data.attempt", message: `data.attempt: must be an integer >= 1, got "2"`},
		{name: "negative size", eventType: "upload.completed", data: with(t, "upload.completed", "size", -1.0),
			field: "data.size", message: "data.size: must be an integer >= 0, got -1"},
		{name: "fractional size", eventType: "upload.completed", data: with(t, "upload.completed", "size", 10.25),
			field: "data.size", message: "data.size: must be an integer >= 0, got 10.25"},
		{name: "balance as null", eventType: "credits.low", data: with(t, "credits.low", "balance", nil),
			field: "data.balance", message: "data.balance: must be a number, got null"},
		{name: "NaN", eventType: "credits.low", data: with(t, "credits.low", "threshold", math.NaN()),
			field: "data.threshold", message: "data.threshold: must be a number, got NaN"},
		{name: "infinity", eventType: "credits.low", data: with(t, "credits.low", "balance", math.Inf(-1)),
			field: "data.balance", message: "data.balance: must be a number, got -Inf"},
		{name: "first bad field in catalogue order", eventType: "transcription.completed",
			data:  with(t, "transcription.completed", "credits", -1.0, "duration", "x", "text", 1.0),
			field: "data.text", message: "data.text: must be a non-empty string, got 1"},

		// Unknown fields, sorted, after everything else.
		{name: "unknown field", eventType: "transcription.started", data: with(t, "transcription.started", "zeta", 1.0, "alpha", "x"),
			field: "data.alpha", message: "data.alpha: is not a field of transcription.started; known fields: uploadId, engine"},
		{name: "wrong case", eventType: "upload.completed", data: with(t, "upload.completed", "uploadID", "upl_1"),
			field: "data.uploadID", message: "data.uploadID: is not a field of upload.completed; known fields: uploadId, size, format"},
		{name: "bad value beats unknown", eventType: "transcription.progress", data: with(t, "transcription.progress", "aaa", 1.0, "percentage", 101.0),
			field: "data.percentage", message: "must be a number between 0 and 100", partial: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.eventType, tt.data)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v (%T), want a *ValidationError", err, err)
			}
			if ve.Field != tt.field {
				t.Errorf("Field = %q, want %q (message %q)", ve.Field, tt.field, ve.Message)
			}
			if ve.Error() != ve.Message || !strings.HasPrefix(ve.Message, ve.Field+": ") {
				t.Errorf("Error() = %q, Message = %q: want equal and prefixed with the field", ve.Error(), ve.Message)
			}
			if tt.partial && !strings.Contains(ve.Message, tt.message) || !tt.partial && ve.Message != tt.message {
				t.Errorf("Message = %q\nwant %q (partial %v)", ve.Message, tt.message, tt.partial)
			}
		})
	}
}

func TestCheckSize(t *testing.T) {
	if err := CheckSize(make([]byte, 100), 100); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	if err := CheckSize(make([]byte, DefaultMaxPayloadBytes), 0); err != nil {
		t.Errorf("at the default limit: %v", err)
	}
	for _, tc := range []struct {
		size, max int
		want      []string
	}{
		{101, 100, []string{"101", "100"}},
		{DefaultMaxPayloadBytes + 1, 0, []string{"262145", "262144"}},
	} {
		var ve *ValidationError
		if err := CheckSize(make([]byte, tc.size), tc.max); !errors.As(err, &ve) || ve.Field != "data" {
			t.Fatalf("CheckSize(%d, %d) = %v, want a ValidationError for data", tc.size, tc.max, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(ve.Message, w) {
				t.Errorf("message %q does not mention %s", ve.Message, w)
			}
		}
	}
}

// The second case of /work/shared/testdata/signatures.json: its body and the
// hex HMAC-SHA256 of that body under its secret, which proves the body below
// was copied byte for byte.
const (
	vectorSecret    = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	vectorBody      = `{"id":"evt_01JDQ7Z6Y1V8M2K3N4P5Q6R7S8","type":"transcription.completed","timestamp":"2026-11-26T19:43:16.123Z","data":{"uploadId":"upl_123","text":"Olá, mundo — “quoted”","duration":12.5,"credits":3}}`
	vectorSignature = "e5654ac18c4ba35427550075ac2a2a63684980c4a7265aed3cc4d942fff5b0b7"
)

func TestEnvelopeSignatureVector(t *testing.T) {
	mac := hmac.New(sha256.New, []byte(vectorSecret))
	mac.Write([]byte(vectorBody))
	if got := hex.EncodeToString(mac.Sum(nil)); got != vectorSignature {
		t.Fatalf("the test vector body was not copied exactly: signature %s", got)
	}

	ts := time.Date(2026, 11, 26, 19, 43, 16, 123456789, time.UTC)
	// Data as ingestion gets it: keys in any order, numbers as float64.
	var data map[string]any
	if err := json.Unmarshal([]byte(`{"credits":3,"duration":12.5,"text":"Olá, mundo — “quoted”","uploadId":"upl_123"}`), &data); err != nil {
		t.Fatal(err)
	}
	body, err := Envelope("evt_01JDQ7Z6Y1V8M2K3N4P5Q6R7S8", "transcription.completed", ts, data, false)
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != vectorBody {
		t.Fatalf("Envelope =\n%s\nwant\n%s", body, vectorBody)
	}

	// The same event in another time zone gives the same body.
	again, err := Envelope("evt_01JDQ7Z6Y1V8M2K3N4P5Q6R7S8", "transcription.completed", ts.In(time.FixedZone("BRT", -3*3600)), data, false)
	if err != nil || !bytes.Equal(again, body) {
		t.Fatalf("Envelope in another zone = %s, %v", again, err)
	}

	// A test delivery adds "test":true as the last key.
	test, err := Envelope("evt_01JDQ7Z6Y1V8M2K3N4P5Q6R7S8", "transcription.completed", ts, data, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSuffix(vectorBody, "}") + `,"test":true}`; string(test) != want {
		t.Fatalf("test Envelope =\n%s\nwant\n%s", test, want)
	}
}

func TestEnvelopeEncoding(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, eventType string
		data            map[string]any
		wantData        string
	}{
		{"no HTML escaping", "transcription.completed",
			map[string]any{"uploadId": "u", "text": "<b>Tom & Jerry</b>", "duration": 1.0, "credits": 0.5},
			`{"uploadId":"u","text":"<b>Tom & Jerry</b>","duration":1,"credits":0.5}`},
		{"escapes like encoding/json", "transcription.failed",
			map[string]any{"uploadId": "u", "error": "line1\nline2\t\"q\" \\ \x01 \u2028 日本", "errorType": "engine_error"},
			`{"uploadId":"u","error":"line1\nline2\t\"q\" \\ \u0001 \u2028 日本","errorType":"engine_error"}`},
		{"integers", "upload.completed",
			map[string]any{"uploadId": "u", "size": 1e15, "format": "wav"},
			`{"uploadId":"u","size":1000000000000000,"format":"wav"}`},
		{"Go integer", "upload.completed",
			map[string]any{"uploadId": "u", "size": 2048, "format": "wav"},
			`{"uploadId":"u","size":2048,"format":"wav"}`},
		{"small and negative", "credits.low",
			map[string]any{"balance": -0.000001, "threshold": math.Copysign(0, -1)},
			`{"balance":-1e-06,"threshold":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := Envelope("evt_1", tt.eventType, ts, tt.data, false)
			if err != nil {
				t.Fatal(err)
			}
			want := `{"id":"evt_1","type":"` + tt.eventType + `","timestamp":"2026-01-02T03:04:05.000Z","data":` + tt.wantData + `}`
			if string(body) != want {
				t.Errorf("Envelope =\n%s\nwant\n%s", body, want)
			}
			if !json.Valid(body) {
				t.Errorf("invalid JSON: %s", body)
			}
		})
	}
}

func TestFormatNumber(t *testing.T) {
	for _, tc := range []struct {
		x    float64
		want string
	}{
		{3, "3"}, {0, "0"}, {math.Copysign(0, -1), "0"}, {-42, "-42"}, {12.5, "12.5"}, {0.1, "0.1"},
		{1<<53 - 1, "9007199254740991"}, {-(1<<53 - 1), "-9007199254740991"},
		{1 << 53, "9.007199254740992e+15"}, {1e21, "1e+21"}, {1e-7, "1e-07"}, {123456789.5, "1.234567895e+08"},
		{math.MaxFloat64, "1.7976931348623157e+308"}, {math.SmallestNonzeroFloat64, "5e-324"},
	} {
		got := formatNumber(tc.x)
		if got != tc.want {
			t.Errorf("formatNumber(%v) = %s, want %s", tc.x, got, tc.want)
		}
		var back float64
		if err := json.Unmarshal([]byte(got), &back); err != nil || back != tc.x {
			t.Errorf("formatNumber(%v) = %s reads back as %v, %v", tc.x, got, back, err)
		}
	}
}

func TestEnvelopeRejects(t *testing.T) {
	ts := time.Now()
	data, _ := Sample("credits.low")
	for _, tc := range []struct {
		name, id, eventType string
		data                map[string]any
		field               string
	}{
		{"empty id", "", "credits.low", data, "id"},
		{"unknown type", "evt_1", "credits.high", data, "type"},
		{"invalid data", "evt_1", "credits.low", with(t, "credits.low", "extra", 1.0), "data.extra"},
	} {
		body, err := Envelope(tc.id, tc.eventType, ts, tc.data, false)
		var ve *ValidationError
		if body != nil || !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%s: Envelope = %q, %v; want a ValidationError for %s", tc.name, body, err, tc.field)
		}
	}
}

func TestSamples(t *testing.T) {
	for _, typ := range Catalogue() {
		data, ok := Sample(typ.Name)
		if !ok {
			t.Fatalf("no sample for %s", typ.Name)
		}
		if err := Validate(typ.Name, data); err != nil {
			t.Errorf("sample of %s: %v", typ.Name, err)
		}
		if _, err := Envelope("evt_test", typ.Name, time.Now(), data, true); err != nil {
			t.Errorf("Envelope of the %s sample: %v", typ.Name, err)
		}
		if id, ok := data["uploadId"].(string); ok && !strings.HasPrefix(id, "upl_test_") {
			t.Errorf("sample uploadId %q lacks the upl_test_ prefix", id)
		}
		data["uploadId"] = "changed" // must not leak into the next sample
	}
	data, _ := Sample("transcription.completed")
	if !strings.HasPrefix(data["text"].(string), "Hello from VoxScriber") || data["credits"] != 3.0 || data["uploadId"] != "upl_test_2f9c4e7a1b" {
		t.Errorf("unexpected transcription.completed sample %v", data)
	}
	if _, ok := Sample("nope"); ok {
		t.Error("Sample of an unknown type succeeded")
	}
}

func TestJSONSchema(t *testing.T) {
	for _, typ := range Catalogue() {
		schema := typ.JSONSchema()
		if _, err := json.Marshal(schema); err != nil {
			t.Fatalf("%s: json.Marshal: %v", typ.Name, err)
		}
		if _, err := structpb.NewStruct(schema); err != nil {
			t.Fatalf("%s: structpb.NewStruct: %v", typ.Name, err)
		}
		names := []any{}
		for _, f := range typ.Fields {
			if !f.Optional {
				names = append(names, f.Name)
			}
		}
		if !reflect.DeepEqual(schema["required"], names) {
			t.Errorf("%s: required = %v, want %v", typ.Name, schema["required"], names)
		}
		if schema["type"] != "object" || schema["additionalProperties"] != false ||
			schema["$schema"] != "https://json-schema.org/draft/2020-12/schema" || schema["title"] != typ.Name {
			t.Errorf("%s: unexpected schema header %v", typ.Name, schema)
		}
		if props := schema["properties"].(map[string]any); len(props) != len(typ.Fields) {
			t.Errorf("%s: %d properties, want %d", typ.Name, len(props), len(typ.Fields))
		}
	}

	progress, _ := Lookup("transcription.progress")
	got, _ := json.Marshal(progress.JSONSchema()["properties"].(map[string]any)["percentage"])
	if want := `{"description":"Percentage of the audio transcribed so far, 0 to 100.","examples":[45],"maximum":100,"minimum":0,"type":"number"}`; string(got) != want {
		t.Errorf("percentage schema = %s, want %s", got, want)
	}
	failed, _ := Lookup("transcription.failed")
	errorType := failed.JSONSchema()["properties"].(map[string]any)["errorType"].(map[string]any)
	if errorType["pattern"] != `^[a-z][a-z0-9_]*$` || errorType["minLength"] != 1.0 || errorType["type"] != "string" {
		t.Errorf("errorType schema = %v", errorType)
	}
}

func TestOperationalTypesAreMarkedAndCarryAnOptionalCount(t *testing.T) {
	want := map[string][]string{
		"endpoint.disabled":  {"endpointId", "url", "reason", "lastError", "disabledAt", "count"},
		"endpoint.enabled":   {"endpointId", "url", "count"},
		"delivery.exhausted": {"deliveryId", "eventId", "eventType", "endpointId", "attempts", "lastError", "count"},
	}
	for _, typ := range Catalogue() {
		fields, operational := want[typ.Name]
		if typ.Operational != operational || IsOperational(typ.Name) != operational {
			t.Errorf("%s: Operational = %v, IsOperational = %v; want %v", typ.Name, typ.Operational, IsOperational(typ.Name), operational)
		}
		schema := typ.JSONSchema()
		if _, marked := schema["x-operational"]; marked != operational {
			t.Errorf("%s: schema x-operational present = %v, want %v", typ.Name, marked, operational)
		}
		if !operational {
			continue
		}
		var got []string
		for _, f := range typ.Fields {
			got = append(got, f.Name)
			if f.Optional != (f.Name == CountField) {
				t.Errorf("%s.%s: Optional = %v", typ.Name, f.Name, f.Optional)
			}
		}
		if !slices.Equal(got, fields) {
			t.Errorf("%s fields = %v, want %v", typ.Name, got, fields)
		}
		count := schema["properties"].(map[string]any)[CountField].(map[string]any)
		if count["type"] != "integer" || count["minimum"] != 2.0 || !strings.Contains(count["description"].(string), "burst") {
			t.Errorf("%s: count schema = %v", typ.Name, count)
		}
		if _, ok := Sample(typ.Name); !ok {
			t.Errorf("%s has no sample", typ.Name)
		}
	}
	if IsOperational("credits.low") || IsOperational("nope") {
		t.Error("IsOperational is true for a producer type or an unknown one")
	}
}

func TestEnvelopeOmitsAnAbsentOptionalFieldAndKeepsAPresentOne(t *testing.T) {
	ts := time.Date(2026, 11, 26, 19, 43, 16, 123000000, time.UTC)
	data := map[string]any{"endpointId": "ep_1", "url": "https://x.example/h"}
	body, err := Envelope("evt_1", "endpoint.enabled", ts, data, false)
	if want := `{"id":"evt_1","type":"endpoint.enabled","timestamp":"2026-11-26T19:43:16.123Z","data":{"endpointId":"ep_1","url":"https://x.example/h"}}`; err != nil || string(body) != want {
		t.Fatalf("Envelope = %s, %v; want %s", body, err, want)
	}
	data["count"] = 20
	body, err = Envelope("evt_1", "endpoint.enabled", ts, data, false)
	if want := `{"id":"evt_1","type":"endpoint.enabled","timestamp":"2026-11-26T19:43:16.123Z","data":{"endpointId":"ep_1","url":"https://x.example/h","count":20}}`; err != nil || string(body) != want {
		t.Fatalf("Envelope = %s, %v; want %s", body, err, want)
	}
	for _, bad := range []any{1, 2.5, "20", nil} {
		data["count"] = bad
		var ve *ValidationError
		if err := Validate("endpoint.enabled", data); !errors.As(err, &ve) || ve.Field != "data.count" {
			t.Errorf("count %v: Validate = %v, want an error for data.count", bad, err)
		}
	}
}

// FuzzValidate feeds arbitrary JSON objects to Validate. It must never panic,
// must only return *ValidationErrors, and whatever it accepts Envelope must
// turn into valid JSON that decodes back to the same data.
func FuzzValidate(f *testing.F) {
	for _, typ := range Catalogue() {
		data, _ := Sample(typ.Name)
		seed, _ := json.Marshal(data)
		f.Add(typ.Name, seed)
	}
	f.Add("transcription.progress", []byte(`{"uploadId":"u","percentage":100,"estimate":1e-7}`))
	f.Add("transcription.completed", []byte(`{"uploadId":"<&>","text":"\u2028\ud800","duration":1e20,"credits":0.1}`))
	f.Add("upload.completed", []byte(`{"uploadId":"u","size":9007199254740993,"format":"mp3","x":null}`))
	f.Add("nope", []byte(`{}`))

	ts := time.Date(2026, 11, 26, 19, 43, 16, 123000000, time.UTC)
	f.Fuzz(func(t *testing.T, eventType string, payload []byte) {
		var data map[string]any
		if json.Unmarshal(payload, &data) != nil {
			return
		}
		err := Validate(eventType, data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field == "" || !strings.HasPrefix(ve.Message, ve.Field+": ") {
				t.Fatalf("Validate returned %#v", err)
			}
			return
		}
		for _, test := range []bool{false, true} {
			body, err := Envelope("evt_fuzz", eventType, ts, data, test)
			if err != nil {
				t.Fatalf("Envelope of accepted data %v: %v", data, err)
			}
			if !json.Valid(body) {
				t.Fatalf("Envelope produced invalid JSON: %s", body)
			}
			var got struct {
				ID, Type, Timestamp string
				Data                map[string]any
				Test                bool
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got.ID != "evt_fuzz" || got.Type != eventType || got.Timestamp != "2026-11-26T19:43:16.123Z" || got.Test != test {
				t.Fatalf("envelope header mismatch: %s", body)
			}
			if !reflect.DeepEqual(got.Data, data) {
				t.Fatalf("data does not round-trip:\n got %v\nwant %v\nbody %s", got.Data, data, body)
			}
		}
	})
}

func TestSubscribed(t *testing.T) {
	for _, tc := range []struct {
		entry, typ string
		want       bool
	}{
		{"*", "credits.low", true},
		{"credits.low", "credits.low", true},
		{"transcription.*", "transcription.retry", true},
		{"transcription.*", "upload.completed", false},
		{"upload.*", "uploadx.completed", false},
		{"credits.low", "credits.lower", false},
	} {
		if got := Subscribed(tc.entry, tc.typ); got != tc.want {
			t.Errorf("Subscribed(%q, %q) = %v", tc.entry, tc.typ, got)
		}
	}
}
